"""The dkeycache: one per machine, holds the DK ring in memory and hands it to the machine's cores.

It fetches the ring from a dkeyserver (root or worker, the first of the given ones that answers) with its own
evidence, refreshes it periodically to follow rotations, and keeps serving what it holds while every
dkeyserver is down. The cores ask over a Unix socket (:mod:`ehsm_kms.core.ringfetch`); before it answers,
the cache checks the caller's uid (``SO_PEERCRED``, what the kernel says) against its allowed uids, and it
answers with the ring sealed to the caller's ephemeral key (context ``"dkeycache"``), so the ring never
crosses the socket in the clear. Each serve and each refusal is logged (the caller's pid and uid, the DK
version; never a key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

import msgspec

from ehsm_kms import errors
from ehsm_kms.core.ringfetch import CONTEXT, CacheReply, CacheRequest
from ehsm_kms.core.ringwire import PUBLIC_SIZE, seal_ring
from ehsm_kms.provisioning.holder import RingHolder
from ehsm_kms.provisioning.localsock import close_quietly, peer_credentials, read_frame, serve_unix, write_frame

log = logging.getLogger("ehsm_kms.dkeycache")
NO_RING = "no domain key yet"
MAX_REQUEST = 4096


class CacheServer:
    def __init__(self, holder: RingHolder, allowed_uids: Iterable[int], *, timeout: float = 5.0) -> None:
        self.holder = holder
        self.allowed = frozenset(allowed_uids)
        if not self.allowed:
            raise errors.ConfigError("the dkeycache needs at least one allowed uid")
        self.timeout = timeout

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid, uid, _ = peer_credentials(writer)
            body = await read_frame(reader, timeout=self.timeout, limit=MAX_REQUEST)
            if uid not in self.allowed:  # the request (bounded) was read only so the refusal reaches the caller
                log.warning("refused the domain key to pid %d: uid %d is not allowed", pid, uid)
                await self._reply(writer, CacheReply(ok=False, error="not allowed"))
                return
            try:
                request = msgspec.msgpack.decode(body, type=CacheRequest)
            except msgspec.DecodeError:
                log.warning("refused pid %d (uid %d): malformed request", pid, uid)
                await self._reply(writer, CacheReply(ok=False, error="malformed request"))
                return
            if request.v != 1 or request.op != "ring" or len(request.public) != PUBLIC_SIZE:
                log.warning("refused pid %d (uid %d): unknown request", pid, uid)
                await self._reply(writer, CacheReply(ok=False, error="unknown request"))
                return
            ring = self.holder.ring
            if ring is None:
                log.info("pid %d (uid %d) asked for the domain key: %s", pid, uid, NO_RING)
                await self._reply(writer, CacheReply(ok=False, error=NO_RING))
                return
            try:
                sealed = seal_ring(ring, request.public, context=CONTEXT)
            except errors.CryptoError:
                log.warning("refused pid %d (uid %d): unusable public key", pid, uid)
                await self._reply(writer, CacheReply(ok=False, error="unusable public key"))
                return
            await self._reply(writer, CacheReply(ok=True, dk_version=ring.current_version, sealed=sealed))
            log.info("served domain-key version %d to pid %d (uid %d)", ring.current_version, pid, uid)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            close_quietly(writer)

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: CacheReply) -> None:
        await write_frame(writer, msgspec.msgpack.encode(reply))

    async def serve(self, path: Path, *, mode: int = 0o660) -> asyncio.Server:
        if mode not in (0o600, 0o660):
            raise errors.ConfigError("the dkeycache socket mode is 0600 or 0660")
        return await serve_unix(Path(path), self.handle, mode=mode)


__all__ = ["NO_RING", "CacheServer"]
