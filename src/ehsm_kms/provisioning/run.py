"""Putting the pieces together for the three long-running processes (root, worker, cache) and for recovery.

Each process hardens itself (:func:`ehsm_kms.core.hardening.harden`) before it holds a key, and runs until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ehsm_kms import errors
from ehsm_kms.core import dk, hardening
from ehsm_kms.core.sealers.base import Sealer
from ehsm_kms.provisioning.audit import ReleaseAudit
from ehsm_kms.provisioning.dkcache import CacheServer
from ehsm_kms.provisioning.dkprotocol import Endpoint, client_context, fetch_remote, server_context
from ehsm_kms.provisioning.dkserver import SEALED_FILE, DkServer, Root, serve_admin
from ehsm_kms.provisioning.gate import Gate
from ehsm_kms.provisioning.holder import Refresher, RingHolder


def harden(log: logging.Logger) -> dict[str, object]:
    report = hardening.harden()
    for warning in hardening.warnings_for(report):
        log.warning("%s", warning)
    return report


@dataclass
class Fetching:
    """Where and how a worker or cache fetches the ring."""

    servers: Sequence[Endpoint]
    ca_files: Sequence[str]
    provider: Any
    interval: float = 300.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    timeout: float = 30.0

    def close(self) -> None:
        """Release the provider's TPM objects (swtpm and TPMs used without a resource manager keep them)."""
        close = getattr(self.provider, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def refresher(self, role: str, holder: RingHolder, log: logging.Logger) -> Refresher:
        return Refresher(
            self.servers,
            client_context(self.ca_files),
            role=role,
            provider=self.provider,
            holder=holder,
            log=log,
            interval=self.interval,
            backoff_initial=self.backoff_initial,
            backoff_max=self.backoff_max,
            timeout=self.timeout,
        )


@dataclass
class Listening:
    host: str
    port: int
    data_dir: Path
    tls_cert: str | None = None
    tls_key: str | None = None
    step_timeout: float = 15.0
    connection_timeout: float = 60.0
    max_connections: int = 64

    def ssl_context(self) -> ssl.SSLContext:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise errors.ConfigError("give both --tls-cert and --tls-key, or neither (a self-signed pair is made)")
        if self.tls_cert and self.tls_key:
            return server_context(self.tls_cert, self.tls_key)
        from ehsm_kms.server import tls  # the openssl command; no key library in this process for it

        cert, key = tls.self_signed(self.data_dir, self.host)
        return server_context(cert, key)


async def _until_stopped(log: logging.Logger) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")


async def _serve_tls(listen: Listening, server: DkServer, log: logging.Logger) -> asyncio.Server:
    ctx = listen.ssl_context()
    try:
        tcp = await asyncio.start_server(
            server.handle, listen.host, listen.port, ssl=ctx, ssl_handshake_timeout=10.0, limit=1 << 16
        )
    except OSError as exc:
        raise errors.ConfigError(f"cannot listen on {listen.host}:{listen.port}: {exc.strerror}") from None
    log.info("dkeyserver (%s) listening on %s:%d", server.role, listen.host, listen.port)
    return tcp


def _prepare(data_dir: Path) -> ReleaseAudit:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return ReleaseAudit(data_dir)


async def run_root(listen: Listening, gate: Gate, sealer: Sealer, *, create: bool, log: logging.Logger) -> None:
    audit = _prepare(listen.data_dir)
    for note in gate.ignored:
        log.warning("%s", note)
    holder = RingHolder()
    root = Root(sealer, listen.data_dir, holder, audit)
    ring = await asyncio.to_thread(root.open, create=create)
    audit.append("start", server_role="root", dk_version=ring.current_version)
    log.info("domain key opened: version %d (%d versions)", ring.current_version, len(ring.versions))
    server = _dk_server("root", holder, gate, audit, listen)

    async def rotate() -> dict[str, Any]:
        return {"dk_version": await root.rotate()}

    admin = await serve_admin(listen.data_dir, {"rotate": rotate, "status": _status("root", holder)})
    tcp = await _serve_tls(listen, server, log)
    async with tcp, admin:
        await _until_stopped(log)


async def run_worker(listen: Listening, gate: Gate, fetching: Fetching, *, log: logging.Logger) -> None:
    audit = _prepare(listen.data_dir)
    for note in gate.ignored:
        log.warning("%s", note)
    holder = RingHolder()
    audit.append("start", server_role="worker", dk_version=0)
    server = _dk_server("worker", holder, gate, audit, listen)

    admin = await serve_admin(listen.data_dir, {"status": _status("worker", holder)})
    tcp = await _serve_tls(listen, server, log)
    try:
        await _with_refresher(fetching.refresher("worker", holder, log), [tcp, admin], log)
    finally:
        fetching.close()


def _dk_server(role: str, holder: RingHolder, gate: Gate, audit: ReleaseAudit, listen: Listening) -> DkServer:
    return DkServer(
        role=role,
        holder=holder,
        gate=gate,
        audit=audit,
        step_timeout=listen.step_timeout,
        connection_timeout=listen.connection_timeout,
        max_connections=listen.max_connections,
    )


def _status(role: str, holder: RingHolder) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The admin socket's ``status``: the server's role and the DK version it holds."""

    async def status() -> dict[str, Any]:
        held = holder.ring
        return {"role": role, "dk_version": held.current_version if held else 0}

    return status


async def run_cache(
    fetching: Fetching, socket_path: Path, allowed_uids: Sequence[int], *, socket_mode: int, log: logging.Logger
) -> None:
    holder = RingHolder()
    cache = CacheServer(holder, allowed_uids)
    unix = await cache.serve(socket_path, mode=socket_mode)
    log.info("dkeycache serving on %s (uids %s)", socket_path, ", ".join(map(str, sorted(set(allowed_uids)))))
    try:
        await _with_refresher(fetching.refresher("cache", holder, log), [unix], log)
    finally:
        fetching.close()


async def _with_refresher(refresher: Refresher, servers: list[asyncio.Server], log: logging.Logger) -> None:
    task = asyncio.create_task(refresher.run())
    try:
        async with contextlib.AsyncExitStack() as stack:
            for s in servers:
                await stack.enter_async_context(s)
            await _until_stopped(log)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def recover(data_dir: Path, sealer: Sealer, fetching: Fetching, *, log: logging.Logger) -> int:
    """Fetch the ring from a worker (as role "root", with this machine's evidence) and seal it here.

    Refuses to overwrite an existing sealed file: recovery is for a root that lost its file.
    """
    path = data_dir / SEALED_FILE
    if path.exists():
        raise errors.ConfigError(f"{path} exists; recovery only writes a root's missing sealed file")
    ctx = client_context(fetching.ca_files)
    last: errors.EhsmError | None = None
    for endpoint in fetching.servers:
        try:
            ring = fetch_remote(endpoint, ctx, role="root", provider=fetching.provider, timeout=fetching.timeout)
        except errors.EhsmError as exc:
            log.warning("recovering from %s failed: %s", endpoint, exc.message)
            last = exc
            continue
        finally:
            fetching.close()  # free the TPM's object slots before the sealer needs them
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        dk.save(sealer, path, ring)
        ReleaseAudit(data_dir).append("recover", source=str(endpoint), dk_version=ring.current_version)
        log.info("recovered domain-key version %d (%d versions) from %s", ring.current_version,
                 len(ring.versions), endpoint)  # fmt: skip
        return ring.current_version
    raise last or errors.ConfigError("no worker to recover from")


__all__ = ["Fetching", "Listening", "harden", "recover", "run_cache", "run_root", "run_worker"]
