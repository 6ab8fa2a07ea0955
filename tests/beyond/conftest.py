"""The live servers of the e2e suite (its harness, imported, not copied), plus in-process nodes for the jobs.

In-process nodes (:func:`node_pair`) are real ones: a real store (SQLite file or PostgreSQL schema), a real core
(in-process mode) with a passphrase-sealed domain key, the real service handlers; only the clock is injected, so
the scheduler's jobs are driven with ``Scheduler(node).run_once(now_ms)`` and nothing sleeps.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg
import pytest

from ehsm_kms.config import Settings
from ehsm_kms.core.protocol import SignedRequest
from ehsm_kms.server.assemble import build_node
from ehsm_kms.service import apps
from ehsm_kms.service.all_actions import HANDLERS
from ehsm_kms.service.node import Node
from tests.e2e import App
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Kms, start_kms, stop_kms
from tests.live import PASSPHRASE_ENV, ROOT
from tests.pg import PG_DSN, pg_run, pg_schema  # noqa: F401
from tests.signing import signed

# The e2e suite's fixtures (its servers on SQLite and PostgreSQL), shared rather than copied.
app, other_app, kms, keyring, stores, backend = e2e.app, e2e.other_app, e2e.kms, e2e.keyring, e2e.stores, e2e.backend

PASSPHRASE = b"beyond test passphrase, not a real one"
LIVE_PASSPHRASE = "test passphrase, not a real one"  # what tests.live gives its servers
ADMIN_ID = re.compile(r"admin id:\s+(admin-[0-9a-f-]{36})")
ADMIN_KEY = re.compile(r"admin key:\s+(\S{32})")
DAY_MS = 86_400_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Admin:
    admin_id: str
    admin_key: str


def admin_credential(log: str) -> Admin:
    """The admin credential a server printed at its first start (standard error, into the test's log file)."""
    found_id, found_key = ADMIN_ID.search(log), ADMIN_KEY.search(log)
    assert found_id and found_key, log[-2000:]
    return Admin(found_id.group(1), found_key.group(1))


@pytest.fixture(scope="session")
def admin_kms(request: pytest.FixtureRequest, backend: str) -> Iterator[tuple[Kms, Admin]]:
    """A server of its own (its store is changed directly by the audit tests), with its admin credential."""
    made = start_kms(request, backend, "beyond-admin", "--enroll-mode", "open")
    try:
        yield made, admin_credential(made.server.log())
    finally:
        stop_kms(made)


def as_admin(kms: Kms, admin: Admin) -> App:
    """Requests signed with the admin credential, exactly like an app's."""
    return App(kms.wire, admin.admin_id, admin.admin_key)


# ------------------------------------------------------------------------------------------ in-process nodes
class Caller:
    """An enrolled app calling the service handlers of one node directly (the server's checks are not needed
    here: the wire is covered by the live-server tests)."""

    def __init__(self, node: Node, appid: str, apikey: str) -> None:
        self.node, self.appid, self.apikey = node, appid, apikey

    def on(self, node: Node) -> Caller:
        return Caller(node, self.appid, self.apikey)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        req: SignedRequest = signed(self.appid, self.apikey, payload)
        outcome = await HANDLERS[action](self.node, req, payload)
        return outcome.result


def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'ehsm-kms.db'}"
    schema = request.getfixturevalue("pg_schema")
    return f"{PG_DSN}?schema={schema}"


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
async def node_pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes on one store, sharing one domain key (one data directory), each with its own store handle."""
    url = store_url(request.param, request, tmp_path)
    settings = Settings(
        data_dir=str(tmp_path / "data"), store_url=url, core_mode="inprocess", sealer="passphrase", key_cache_ttl_ms=0
    )
    first = await build_node(settings, secret=PASSPHRASE)
    second = await build_node(settings, secret=PASSPHRASE)
    try:
        yield first, second
    finally:
        for node in (first, second):
            await node.core.close()
            await node.store.close()


async def enrolled(node: Node) -> Caller:
    made = await apps.enroll(node, "open", None)
    return Caller(node, made["appid"], made["apikey"])


# ------------------------------------------------------------------------------------------ the store, directly
def _pg_schema(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["schema"]


@contextlib.contextmanager
def database(url: str) -> Iterator[Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """A direct connection to a store (as an operator, or an attacker with database access, has one); yields
    ``run(sql, params)`` with ``?`` placeholders, committing each statement."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], timeout=30, isolation_level=None)
        try:
            yield lambda sql, params=(): conn.execute(sql, params).fetchall()
        finally:
            conn.close()
        return
    dsn = urlunsplit(urlsplit(url)._replace(query=""))
    with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={_pg_schema(url)}") as pg:

        def run(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
            cur = pg.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

        yield run


def url_of(store: Any) -> str:
    """The URL of an in-process node's store."""
    if getattr(store, "schema", None):
        return f"{PG_DSN}?schema={store.schema}"
    return f"sqlite:///{store.path}"


@contextlib.contextmanager
def refusing_inserts(url: str, table: str) -> Iterator[None]:
    """A trigger that makes every INSERT into ``table`` fail: a store that refuses the write, for real."""
    with database(url) as run:
        if url.startswith("sqlite:///"):
            run(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'refused'); END")
        else:
            run("CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$")  # fmt: skip
            run(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()")
        try:
            yield
        finally:
            run(f"DROP TRIGGER refuse_{table}" + ("" if url.startswith("sqlite:///") else f" ON {table}"))


def ehsm_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python -m ehsm_kms.cli.main ...`` as an operator on the node runs it (with the test sealer's secret)."""
    full = dict(os.environ, **{PASSPHRASE_ENV: LIVE_PASSPHRASE}, **(env or {}))
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), full.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "ehsm_kms.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full,
        cwd=ROOT,
        check=False,
    )


def node_args(kms: Kms) -> list[str]:
    """The options that point an ``ehsm-kms admin`` command at a live server's store and domain key."""
    return [
        "--data-dir", str(kms.server.data_dir), "--store-url", kms.store_url,
        "--sealer", "passphrase", "--sealer-secret", f"env:{PASSPHRASE_ENV}", "--core-mode", "inprocess",
    ]  # fmt: skip


def store_args(kms: Kms) -> list[str]:
    return ["--data-dir", str(kms.server.data_dir), "--store-url", kms.store_url]
