"""Fixtures of the robustness suite: live servers that are always stopped, and a PostgreSQL schema per session.

PostgreSQL: every test session gets a schema of its own (``ehsm_rb_<random hex>``) in the machine's database,
dropped when the session ends. When the server cannot be reached the PostgreSQL tests are skipped on a developer
machine and fail on CI (``CI=true``), where a missing database means a broken pipeline, not an optional test.

Each test appends the figures it measured to :data:`REPORT`; they are printed at the end of the run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql

from tests.live import LiveServer

PG_DSN = os.environ.get("EHSM_KMS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")

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


def _pg_unreachable(reason: str) -> NoReturn:
    message = f"PostgreSQL at {PG_DSN} is not reachable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    """A schema of this session's own; the stores create their tables in it, and it is dropped at the end."""
    try:
        admin = psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        _pg_unreachable((str(exc).strip().splitlines() or [type(exc).__name__])[0])
    name = f"ehsm_rb_{secrets.token_hex(6)}"
    try:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        yield name
    finally:
        try:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        finally:
            admin.close()


@pytest.fixture(scope="session")
def pg_store_url(pg_schema: str) -> str:
    return f"{PG_DSN}?schema={pg_schema}"


@pytest.fixture
def pg_conn(pg_schema: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A direct connection to the session schema, to look at what the servers wrote."""
    conn = psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True, options=f"-c search_path={pg_schema}")
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
