"""PostgreSQL for tests: every test run gets its own schemas, so runs (and developers) never collide.

At session start a run schema ``ehsm_test_<random>`` is created; each test that asks for ``pg_schema`` gets a
fresh ``ehsm_test_<random>_<n>`` (created by the store's ``migrate()``, dropped after the test); at the end
every schema of the run is dropped.

The server is ``EHSM_TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``). When it cannot be
reached, tests that need it skip with the reason, except under ``CI=true``, where they fail: CI must never
pass because the database was missing.

Use the fixtures from a conftest.py: ``from tests.pg import pg_run, pg_schema  # noqa: F401``.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

PG_DSN = os.environ.get("EHSM_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


class PgRun:
    """The schemas of one test run."""

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]], prefix: str) -> None:
        self.dsn = PG_DSN
        self.prefix = prefix
        self._conn = conn
        self._counter = itertools.count(1)

    def new_schema(self) -> str:
        """A schema name of this run, not yet created (the store's migrate() creates it)."""
        return f"{self.prefix}_{next(self._counter)}"

    def drop_schema(self, name: str) -> None:
        self._conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))

    def drop_all(self) -> None:
        rows = self._conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
            (self.prefix, self.prefix + r"\_%"),
        ).fetchall()
        for (name,) in rows:
            self.drop_schema(str(name))


@pytest.fixture(scope="session")
def pg_run() -> Iterator[PgRun]:
    try:
        conn = psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True)
    except psycopg.Error as exc:
        where = psycopg.conninfo.conninfo_to_dict(PG_DSN)
        target = f"{where.get('host', 'localhost')}:{where.get('port', 5432)}/{where.get('dbname', '')}"
        first_line = (str(exc).strip().splitlines() or [""])[0]
        reason = f"PostgreSQL is not reachable at {target} ({type(exc).__name__}: {first_line})"
        if _in_ci():
            pytest.fail(f"{reason}; CI=true requires it (set EHSM_TEST_PG_DSN to point elsewhere)")
        pytest.skip(f"{reason}; start it or set EHSM_TEST_PG_DSN (under CI=true this fails)")
    with conn:
        run = PgRun(conn, f"ehsm_test_{secrets.token_hex(4)}")
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(run.prefix)))
        try:
            yield run
        finally:
            run.drop_all()


@pytest.fixture
def pg_schema(pg_run: PgRun) -> Iterator[str]:
    """A fresh schema name for this test; dropped afterwards."""
    name = pg_run.new_schema()
    yield name
    pg_run.drop_schema(name)
