"""Fixtures of the robustness suite: live servers that are always stopped, and a PostgreSQL schema per session.

PostgreSQL: every test session gets a schema of its own (``ehsm_rb_<random hex>``) in the machine's database,
dropped when the session ends. Reaching the server is tests/pg.py's ``pg_run``: when it cannot be reached the
PostgreSQL tests are skipped on a developer machine and fail on CI (``CI=true``), where a missing database means
a broken pipeline, not an optional test.

Each test appends the figures it measured to :data:`REPORT`; they are printed at the end of the run.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.live import LiveServer
from tests.pg import PG_DSN, PgRun, pg_run  # noqa: F401

REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("robustness figures")
        for line in REPORT:
            terminalreporter.write_line(line)


def report(line: str) -> None:
    """Keep a measured figure for the end-of-run summary (and show it with ``-s``)."""
    REPORT.append(line)
    print(line)


@pytest.fixture(scope="session")
def rb_schema(pg_run: PgRun) -> Iterator[str]:  # noqa: F811 (the fixture imported above)
    """This session's schema; the stores create it and their tables (``migrate()``), and it is dropped at the end.

    ``pg_run`` (tests/pg.py) skips when PostgreSQL cannot be reached, and fails instead under ``CI=true``.
    """
    name = f"ehsm_rb_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        pg_run.drop_schema(name)


@pytest.fixture(scope="session")
def rb_store_url(rb_schema: str) -> str:
    return f"{PG_DSN}?schema={rb_schema}"


@pytest.fixture
def pg_conn(rb_schema: str, rb_store_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A direct connection to the session schema, to look at what the servers wrote."""
    conn = psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True, options=f"-c search_path={rb_schema}")
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def servers() -> Iterator[Callable[..., LiveServer]]:
    """Start live servers (``start(data_dir, store_url, *extra)``); every one is stopped after the test."""
    started: list[LiveServer] = []

    def start(data_dir: Path, store_url: str, *extra: str) -> LiveServer:
        server = LiveServer(data_dir, store_url, extra=list(extra))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
