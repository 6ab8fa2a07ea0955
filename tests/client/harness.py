"""The two ways the SDK suites reach a server: a live ``ehsm-kms serve`` on loopback, and the app in-process.

In-process, the real ASGI app (``build_app`` + ``startup``, SQLite store, in-process core) runs on an event loop in a
background thread. ``AsyncClient`` talks to it through ``httpx.ASGITransport``; ``Client`` through
:class:`ThreadedASGITransport`, which hands each request to that loop. :class:`Facade` gives an ``AsyncClient`` the
synchronous method surface, so one test body exercises all four pairings.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ehsm_kms.client import AdminClient, AsyncAdminClient, AsyncClient, Client
from ehsm_kms.config import Settings
from ehsm_kms.server.app import KmsApp
from ehsm_kms.server.assemble import build_app
from ehsm_kms.service import admin as service_admin
from ehsm_kms.service.all_actions import HANDLERS
from tests.live import LiveServer

T = TypeVar("T")
PASSPHRASE = b"in-process test passphrase, not a real one"
SECRET_ACTIONS = (
    "CreateSecret",
    "UpdateSecretDesc",
    "PutSecretValue",
    "ListSecretVersionIds",
    "ListSecrets",
    "DescribeSecret",
    "DeleteSecret",
    "GetSecretValue",
    "RestoreSecret",
)
MODES = ["live-sync", "live-async", "asgi-sync", "asgi-async"]
ADMIN_LINES = re.compile(r"admin id:\s+(admin-[0-9a-f-]{36})\s+admin key:\s+(\S{32})")


def admin_from_log(log: str) -> tuple[str, str]:
    """The admin credential a live server printed at its first start (into its log file)."""
    found = ADMIN_LINES.search(log)
    assert found, log[-2000:]
    return found.group(1), found.group(2)


def require_secret_actions() -> None:
    """The secret-manager tests fail (not skip) with this message while the server lacks the actions."""
    missing = [name for name in SECRET_ACTIONS if name not in HANDLERS]
    if missing:
        pytest.fail(
            "the server does not implement the secret-manager actions yet (contract section 6): "
            f"missing from ehsm_kms.service HANDLERS: {', '.join(missing)}",
            pytrace=False,
        )


class LoopThread:
    """An asyncio loop in a daemon thread; ``run`` executes a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="asgi-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class ThreadedASGITransport(httpx.BaseTransport):
    """A synchronous transport into an ASGI app that lives on another thread's event loop."""

    def __init__(self, app: KmsApp, loop: LoopThread) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def forward() -> tuple[int, httpx.Headers, bytes]:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=content)
            response = await self._inner.handle_async_request(inner)
            body = await response.aread()
            return response.status_code, response.headers, body

        status, headers, body = self._loop.run(forward())
        return httpx.Response(status, headers=headers, content=body, request=request)


@dataclass
class InProcess:
    app: KmsApp
    loop: LoopThread
    url: str = "http://kms.test"

    @classmethod
    def start(cls, data_dir: Path) -> InProcess:
        settings = Settings(
            data_dir=str(data_dir),
            store_url=f"sqlite:///{data_dir}/kms.db",
            core_mode="inprocess",
            sealer="passphrase",
        ).validate()
        loop = LoopThread()
        app = build_app(settings, secret=PASSPHRASE)
        loop.run(app.startup())
        return cls(app, loop)

    def stop(self) -> None:
        self.loop.run(self.app.shutdown())
        self.loop.close()

    def sync_client(self, **kw: Any) -> Client:
        return Client(self.url, transport=ThreadedASGITransport(self.app, self.loop), **kw)

    def async_client(self, **kw: Any) -> AsyncClient:
        return AsyncClient(self.url, transport=httpx.ASGITransport(app=self.app), **kw)

    def admin_credential(self) -> tuple[str, str]:
        """A fresh admin credential of the in-process node (what it showed at start went to standard error)."""
        assert self.app.node is not None
        return self.loop.run(service_admin.reset_admin_credential(self.app.node))


class Facade:
    """An ``AsyncClient`` with the synchronous surface: each coroutine method runs on the loop thread."""

    def __init__(self, client: AsyncClient, loop: LoopThread) -> None:
        self._client = client
        self._loop = loop

    @property
    def inner(self) -> AsyncClient:
        return self._client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(attr(*args, **kwargs))

        return call

    def close(self) -> None:
        self._loop.run(self._client.aclose())


@dataclass
class Kms:
    """One pairing of client flavour and server; ``client()`` makes a client (enrolled unless told otherwise)."""

    mode: str
    url: str
    make: Callable[..., Any]
    closers: list[Callable[[], None]]
    make_admin: Callable[..., Any] | None = None

    def admin(self, **kw: Any) -> Any:
        """An admin client (sync, or the async one behind a Facade) signed with the server's admin credential."""
        assert self.make_admin is not None
        made = self.make_admin(**kw)
        self.closers.append(made.close)
        return made

    def client(self, *, enroll: bool = True, **kw: Any) -> Any:
        made = self.make(**kw)
        self.closers.append(made.close)
        if enroll:
            made.enroll()
        return made

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()


@dataclass
class Servers:
    live: LiveServer
    inproc: InProcess
    loop: LoopThread  # for AsyncClients of the live server

    _admins: dict[str, tuple[str, str]] = field(default_factory=dict)

    def admin_credential(self, where: str) -> tuple[str, str]:
        if where not in self._admins:
            self._admins[where] = admin_from_log(self.live.log()) if where == "live" else self.inproc.admin_credential()
        return self._admins[where]

    def kms(self, mode: str) -> Kms:
        closers: list[Callable[[], None]] = []
        where = mode.split("-", maxsplit=1)[0]

        def admin(**kw: Any) -> Any:
            ident, key = kw.pop("admin_id", None), kw.pop("admin_key", None)
            if ident is None or key is None:
                ident, key = self.admin_credential(where)
            if mode == "live-sync":
                return AdminClient(self.live.url, ident, key, **kw)
            if mode == "live-async":
                return Facade(AsyncAdminClient(self.live.url, ident, key, **kw), self.loop)
            if mode == "asgi-sync":
                transport = ThreadedASGITransport(self.inproc.app, self.inproc.loop)
                return AdminClient(self.inproc.url, ident, key, transport=transport, **kw)
            made = AsyncAdminClient(
                self.inproc.url, ident, key, transport=httpx.ASGITransport(app=self.inproc.app), **kw
            )
            return Facade(made, self.inproc.loop)

        if mode == "live-sync":
            return Kms(mode, self.live.url, lambda **kw: Client(self.live.url, **kw), closers, admin)
        if mode == "live-async":
            made = Kms(mode, self.live.url, lambda **kw: Facade(AsyncClient(self.live.url, **kw), self.loop), closers)
            made.make_admin = admin
            return made
        if mode == "asgi-sync":
            return Kms(mode, self.inproc.url, self.inproc.sync_client, closers, admin)
        return Kms(
            mode,
            self.inproc.url,
            lambda **kw: Facade(self.inproc.async_client(**kw), self.inproc.loop),
            closers,
            admin,
        )


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("sdk-live")
    server = LiveServer(root, f"sqlite:///{root}/kms.db", extra=["--enroll-mode", "open"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def servers(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    inproc = InProcess.start(tmp_path_factory.mktemp("sdk-asgi"))
    loop = LoopThread()
    yield Servers(live_server, inproc, loop)
    loop.close()
    inproc.stop()


@pytest.fixture(params=MODES)
def kms(request: pytest.FixtureRequest, servers: Servers) -> Iterator[Kms]:
    made = servers.kms(request.param)
    yield made
    made.close()
