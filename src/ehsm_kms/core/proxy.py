"""The core as the rest of the node sees it: one async interface, in-process or isolated.

:class:`IsolatedCore` runs the Enclave in a child process (:mod:`ehsm_kms.core.child`) and talks to it over a
socketpair with many calls in flight at once (pipelining is what makes an isolated core cheap: one request at a time
would be bound by the round trip). A supervisor restarts a core that died; calls in flight then fail with
:class:`~ehsm_kms.errors.CoreUnavailable`, never with a wrong answer.

:class:`LocalCore` runs the Enclave in this process on one worker thread, for deployments where the whole node runs
inside a TEE, and for tests.

Both follow the core's domain-key ring (:mod:`ehsm_kms.core.ringfollow`): until the core holds one (cluster mode,
before the dkeycache answered) they ask it to fetch with a bounded exponential backoff with jitter, forever until
closed, and answer every other call with CoreUnavailable ("waiting for the domain key") instead of making it wait;
once it does, they ask it to look for a newer ring every ``refresh_interval_s``. A restarted core starts waiting
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import msgspec

from ehsm_kms import errors
from ehsm_kms.core import channel
from ehsm_kms.core.coreconfig import WAITING_FOR_RING, CoreConfig
from ehsm_kms.core.protocol import Call, Reply, decode_reply, encode
from ehsm_kms.core.ringfollow import RING_OPS, RingFollower

log = logging.getLogger("ehsm_kms.core")


class Core(Protocol):
    async def start(self) -> None: ...
    async def call(self, call: Call) -> dict[str, Any]: ...
    async def close(self) -> None: ...

    @property
    def ready(self) -> bool:
        """Whether the core holds a domain-key ring (False while it waits for one, or restarts)."""

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until :attr:`ready`; False when ``timeout`` seconds passed first."""


def raise_reply(reply: Reply) -> dict[str, Any]:
    """The result of a reply, or the error it names raised as the same class of :mod:`ehsm_kms.errors`."""
    if reply.error is None:
        return reply.result
    cls = getattr(errors, reply.error, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.EhsmError)):
        cls = errors.CryptoError
    raise cls(reply.message)


class LocalCore:
    """The Enclave in this process (in-process mode)."""

    def __init__(self, config: CoreConfig, *, refresh_interval_s: float = 30.0) -> None:
        self._config = config
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ehsm-core")
        self._enclave: Any = None
        self._ring = RingFollower(self._run, refresh_interval_s)

    @property
    def ready(self) -> bool:
        return self._enclave is not None and self._ring.dk_version > 0

    @property
    def dk_version(self) -> int:
        return self._ring.dk_version

    async def wait_ready(self, timeout: float | None = None) -> bool:
        return await self._ring.wait(timeout)

    async def start(self) -> None:
        from ehsm_kms.core.enclave import Enclave
        from ehsm_kms.core.ops_ring import RingKeeper
        from ehsm_kms.core.ringsource import ring_source

        def boot() -> Any:
            keeper = RingKeeper(ring_source(self._config))
            return Enclave(keeper.first(), run_self_tests=self._config.run_self_tests, keeper=keeper)

        self._enclave = await asyncio.get_running_loop().run_in_executor(self._executor, boot)
        ring = self._enclave.ring_or_none
        self._ring.note(ring.current_version if ring is not None else 0)
        self._ring.start()

    async def _run(self, call: Call) -> dict[str, Any]:
        if self._enclave is None:
            raise errors.CoreUnavailable()
        reply = await asyncio.get_running_loop().run_in_executor(self._executor, self._enclave.handle, call)
        return raise_reply(reply)

    async def call(self, call: Call) -> dict[str, Any]:
        if not self._ring.dk_version and call.op not in RING_OPS:
            raise errors.CoreUnavailable(WAITING_FOR_RING)
        return await self._run(call)

    async def close(self) -> None:
        await self._ring.stop()
        self._enclave = None
        self._executor.shutdown(wait=True)


class IsolatedCore:
    """The Enclave in a hardened child process, with a supervisor that restarts it."""

    def __init__(
        self, config: CoreConfig, *, restart: bool = True, max_backoff: float = 5.0, refresh_interval_s: float = 30.0
    ) -> None:
        self._config = config
        self._restart = restart
        self._max_backoff = max_backoff
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._next_id = 1
        self._writer: asyncio.StreamWriter | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._closing = False
        self._ready = asyncio.Event()
        self.restarts = 0
        self.hardening: dict[str, Any] = {}
        self._ring = RingFollower(self._send, refresh_interval_s)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._ring.dk_version > 0

    @property
    def dk_version(self) -> int:
        return self._ring.dk_version

    async def wait_ready(self, timeout: float | None = None) -> bool:
        return await self._ring.wait(timeout)

    async def start(self) -> None:
        """Start the child; raise CoreStartError with its reason. In single mode the child has opened the domain
        key when this returns; in cluster mode it may still wait for the dkeycache (see :attr:`ready`)."""
        await self._spawn()
        self._ring.start()

    async def _spawn(self) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ehsm_kms.core.child",
                str(child_sock.fileno()),
                pass_fds=(child_sock.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
            )
        finally:
            child_sock.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent_sock, limit=channel.MAX_FRAME)
        self._writer = writer
        writer.write(channel.frame(self._take_id(), msgspec.msgpack.encode(self._config)))
        try:
            reply = await self._read_one(reader)
        except (channel.ChannelError, asyncio.IncompleteReadError):
            await self._reap()
            raise errors.CoreStartError("the core process exited during start") from None
        if reply.error is not None:
            await self._reap()
            raise errors.CoreStartError(reply.message or "the core refused to start")
        self.hardening = dict(reply.result.get("hardening", {}))
        version = int(reply.result.get("dk_version", 0))
        log.info("isolated core started (pid %s, DK version %s)", self._proc.pid, version or "none yet")
        self._reader_task = asyncio.create_task(self._read_loop(reader))
        self._ready.set()
        self._ring.note(version)

    def _take_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1 if rid < 0xFFFFFFFF else 1
        return rid

    async def _read_one(self, reader: asyncio.StreamReader) -> Reply:
        while True:
            rid, length = channel.parse_header(await reader.readexactly(channel.HEADER.size))
            body = await reader.readexactly(length)
            if rid == channel.LOG_ID:
                self._log_record(body)
                continue
            return decode_reply(body)

    @staticmethod
    def _log_record(body: bytes) -> None:
        with contextlib.suppress(msgspec.DecodeError, TypeError, KeyError):
            rec = msgspec.msgpack.decode(body)
            log.log(int(rec["level"]), "core: %s", str(rec["msg"]))

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                rid, length = channel.parse_header(await reader.readexactly(channel.HEADER.size))
                body = await reader.readexactly(length)
                if rid == channel.LOG_ID:
                    self._log_record(body)
                    continue
                fut = self._pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(decode_reply(body))
        except (asyncio.IncompleteReadError, channel.ChannelError, ConnectionError, msgspec.DecodeError):
            pass
        await self._on_core_lost()

    async def _on_core_lost(self) -> None:
        self._ready.clear()
        self._ring.note(0, alive=False)
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(errors.CoreUnavailable())
        await self._reap()
        if self._closing or not self._restart:
            return
        log.error("the isolated core died; restarting it (%d calls in flight failed)", len(pending))
        backoff = 0.05
        while not self._closing:
            try:
                await self._spawn()
                self.restarts += 1
                return
            except errors.CoreStartError as exc:
                log.error("core restart failed: %s; retrying in %.2f s", exc.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _reap(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()

    async def call(self, call: Call) -> dict[str, Any]:
        if not self._ring.dk_version and call.op not in RING_OPS and self._ready.is_set():
            raise errors.CoreUnavailable(WAITING_FOR_RING)
        return await self._send(call)

    async def _send(self, call: Call) -> dict[str, Any]:
        writer = self._writer
        if writer is None or not self._ready.is_set():
            raise errors.CoreUnavailable()
        rid = self._take_id()
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        writer.write(channel.frame(rid, encode(call)))
        if writer.transport.get_write_buffer_size() > 1 << 20:
            await writer.drain()
        reply = await fut
        return raise_reply(reply)

    async def close(self) -> None:
        self._closing = True
        await self._ring.stop()
        self._ready.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._proc is not None and self._proc.returncode is None:
            try:
                await asyncio.wait_for(self._proc.wait(), 5)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()


def make_core(config: CoreConfig, *, isolated: bool, refresh_interval_s: float = 30.0) -> Core:
    if isolated:
        return IsolatedCore(config, refresh_interval_s=refresh_interval_s)
    return LocalCore(config, refresh_interval_s=refresh_interval_s)


__all__ = ["Core", "IsolatedCore", "LocalCore", "make_core"]
