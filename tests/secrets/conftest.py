"""Fixtures of the secret-manager suite.

* ``store`` / ``twin``: a migrated store on each backend, and a second store on the same database (another node).
* ``kms``: one live ``ehsm-kms serve`` per backend for the session (the end-to-end harness of tests/e2e), ``app``
  and ``other_app`` freshly enrolled on it.
* ``pg_pair``: two server processes on one PostgreSQL schema, sharing one sealed domain key (two cluster nodes).
* :class:`LocalNode`: the real ASGI app with an in-process core and an injected clock, for the deletion job;
  requests are signed by the e2e suite's rule with timestamps of that clock.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ehsm_kms.core.coreconfig import CoreConfig
from ehsm_kms.core.proxy import LocalCore
from ehsm_kms.server.app import KmsApp
from ehsm_kms.service.node import Node
from ehsm_kms.service.scheduler import Scheduler
from ehsm_kms.storage import Store, open_store
from tests.e2e import App, Wire, sign_string, signature
from tests.e2e.conftest import BACKENDS, Kms, start_kms, stop_kms, stores  # noqa: F401 (stores: a fixture)
from tests.live import LiveServer
from tests.pg import PG_DSN, PgRun, pg_run, pg_schema  # noqa: F401 (fixtures)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------- stores
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'ehsm-kms.db'}"
    schema = request.getfixturevalue("pg_schema")
    return f"{PG_DSN}?schema={schema}&pool_max_size=20"


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, request, tmp_path)


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    opened = open_store(url)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def twin(store: Store, url: str) -> AsyncIterator[Store]:
    """A second store on the same database: what another node (or process) sees and does."""
    opened = open_store(url)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


# ---------------------------------------------------------------- live servers
@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def kms(request: pytest.FixtureRequest, backend: str) -> Iterator[Kms]:
    made = start_kms(request, backend, "secrets", "--enroll-mode", "open")
    try:
        yield made
    finally:
        stop_kms(made)


@pytest.fixture
def app(kms: Kms) -> App:
    return kms.enroll()


@pytest.fixture
def other_app(kms: Kms) -> App:
    return kms.enroll()


@dataclass
class Pair:
    """Two server processes (two nodes) on one PostgreSQL schema."""

    nodes: list[LiveServer]
    wires: list[Wire]
    store_url: str
    schema: str


@pytest.fixture(scope="session")
def pg_pair(pg_run: PgRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:  # noqa: F811
    schema = pg_run.new_schema()
    url = f"{pg_run.dsn}?schema={schema}"
    data_dir = tmp_path_factory.mktemp("secrets-pair")
    nodes: list[LiveServer] = []
    wires: list[Wire] = []
    try:
        for _ in range(2):  # one after the other: the first creates and seals the domain key, the second opens it
            nodes.append(LiveServer(data_dir, url, extra=["--enroll-mode", "open"]).start())
        wires = [Wire(node.url) for node in nodes]
        yield Pair(nodes, wires, url, schema)
    finally:
        for wire in wires:
            wire.close()
        for node in nodes:
            node.stop()


# ---------------------------------------------------------------- in-process nodes with an injected clock
@dataclass
class Clock:
    now: int

    def __call__(self) -> int:
        return self.now


PASSPHRASE = b"secrets suite passphrase, not a real one"


@dataclass
class Signed:
    """An app's credentials; bodies signed by the e2e suite's rule, with the node's clock as timestamp."""

    appid: str
    apikey: str


@dataclass
class LocalNode:
    """One KMS node in this process: its ASGI app, a store, an in-process core, the injected clock."""

    app: KmsApp
    clock: Clock
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(base_url="http://kms.test", transport=httpx.ASGITransport(app=self.app))

    @classmethod
    async def start(
        cls, store_url: str, data_dir: Path, clock: Clock, *, scheduler_interval_s: float = 0.0
    ) -> LocalNode:
        """A node on ``store_url``; nodes on one ``data_dir`` share its sealed domain key. The scheduler runs
        only with ``scheduler_interval_s`` > 0 (its first run is at start, as on a real node)."""

        async def factory() -> Node:
            store = open_store(store_url)
            await store.migrate()
            core = LocalCore(
                CoreConfig(
                    sealer="passphrase",
                    sealed_path=str(data_dir / "domain-key.sealed"),
                    secret=PASSPHRASE,
                    scrypt_n=2**10,
                    run_self_tests=False,  # they have their own suite; a node here starts in milliseconds
                )
            )
            await core.start()
            return Node(store, core, clock_ms=clock)

        app = KmsApp(factory, enroll_mode="open", clock_ms=clock, scheduler_interval_s=scheduler_interval_s)
        await app.startup()
        return cls(app, clock)

    @property
    def node(self) -> Node:
        assert self.app.node is not None
        return self.app.node

    async def stop(self) -> None:
        await self.http.aclose()
        await self.app.shutdown()

    async def run_jobs(self) -> dict[str, int]:
        """Every registered job once, at the injected time (what this node's scheduler does on each tick)."""
        return await Scheduler(self.node).run_once(self.clock.now)

    async def enroll(self) -> Signed:
        out = (await self.http.get("/ehsm", params={"Action": "Enroll"})).json()
        assert out["code"] == 200, out
        return Signed(out["result"]["appid"], out["result"]["apikey"])

    async def call(self, who: Signed, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        ts = str(self.clock.now)
        nonce = secrets.token_hex(8)
        body = {
            "appid": who.appid,
            "timestamp": ts,
            "nonce": nonce,
            "payload": payload,
            "sign": signature(who.apikey, sign_string(who.appid, ts, payload, nonce)),
        }
        resp = await self.http.post("/ehsm/", params={"Action": action}, json=body)
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        return out

    async def ok(self, who: Signed, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        out = await self.call(who, action, payload)
        assert out["code"] == 200, (action, out)
        return out


__all__ = ["App", "Clock", "Kms", "LocalNode", "Pair", "Signed"]
