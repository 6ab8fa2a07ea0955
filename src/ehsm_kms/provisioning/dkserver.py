"""The dkeyserver: releases the DK ring over TLS to clients whose evidence verifies, and audits every answer.

A **root** holds the ring from its sealed file (``dk.sealed`` in its data directory, under the passphrase,
pkcs11 or tpm2 sealer) and rotates it on request over its admin socket (``admin.sock``, 0600, callers of another
uid refused). A **worker** holds the ring only in memory: it fetches it from the root the way a dkeycache does
(its own evidence, :class:`~ehsm_kms.provisioning.holder.Refresher`), follows rotations by refreshing, and keeps
serving what it has while the root is down. Both serve the same protocol (:mod:`.dkprotocol`) and refuse
with a reason: every release and every refusal is a record of the release audit (:mod:`.audit`), written
before the answer is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ehsm_kms import errors
from ehsm_kms.core import dk
from ehsm_kms.core.ringwire import PUBLIC_SIZE, seal_ring, spki_of
from ehsm_kms.core.sealers.base import Sealer
from ehsm_kms.provisioning.attest import KINDS, bind_report_data
from ehsm_kms.provisioning.audit import ReleaseAudit
from ehsm_kms.provisioning.dkprotocol import (
    CONTEXT,
    NONCE_SIZE,
    PURPOSE,
    ROLES,
    Activation,
    Challenge,
    Hello,
    Identity,
    Nonce,
    Proof,
    ProtocolError,
    Release,
    encode,
    read_message,
)
from ehsm_kms.provisioning.gate import Gate
from ehsm_kms.provisioning.holder import RingHolder
from ehsm_kms.provisioning.localsock import (
    ADMIN_SOCKET,
    close_quietly,
    peer_credentials,
    read_frame,
    serve_unix,
    write_frame,
)

log = logging.getLogger("ehsm_kms.dkeyserver")
SEALED_FILE = "dk.sealed"


class _Refusal(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DkServer:
    def __init__(
        self,
        *,
        role: str,
        holder: RingHolder,
        gate: Gate,
        audit: ReleaseAudit,
        step_timeout: float = 15.0,
        connection_timeout: float = 60.0,
        max_connections: int = 64,
    ) -> None:
        self.role = role
        self.holder = holder
        self.gate = gate
        self.audit = audit
        self.step_timeout = step_timeout
        self.connection_timeout = connection_timeout
        self._slots = asyncio.Semaphore(max_connections)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _address(writer.get_extra_info("peername"))
        state: dict[str, Any] = {"peer": peer, "role": "", "kind": "", "connection": secrets.token_hex(8)}
        if self._slots.locked():
            await self._refuse(writer, state, "too many connections")
            close_quietly(writer)
            return
        async with self._slots:
            try:
                async with asyncio.timeout(self.connection_timeout):
                    await self._exchange(reader, writer, state)
            except _Refusal as exc:
                await self._refuse(writer, state, exc.reason)
            except errors.EhsmError as exc:
                await self._refuse(writer, state, exc.message or type(exc).__name__)
            except TimeoutError:
                await self._refuse(writer, state, "the client was too slow (timeout)")
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
                await self._refuse(writer, state, "the client closed the connection before proving anything")
            except Exception as exc:  # a verifier's surprise: refused and audited like any other failure
                log.exception("unexpected error while serving %s", state["peer"])
                await self._refuse(writer, state, f"internal error ({type(exc).__name__})")
            finally:
                close_quietly(writer)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, Any]
    ) -> None:
        step = self.step_timeout
        hello = _expect(await read_message(reader, Hello, timeout=step), Hello)
        state["role"], state["kind"] = str(hello.role)[:16], str(hello.kind)[:16]
        if hello.v != 1 or hello.role not in ROLES or hello.kind not in KINDS or len(hello.public) != PUBLIC_SIZE:
            raise _Refusal("malformed hello (version, role, kind or public key)")
        self.gate.check_kind(hello.kind)
        nonce = os.urandom(NONCE_SIZE)  # this connection's only: it is never stored, so it cannot come back
        writer.write(encode(Nonce(nonce=nonce)))
        tpm2_verifier = None
        if hello.kind == "tpm2":
            tpm2_verifier = await self._activate(reader, writer)
        proof = _expect(await read_message(reader, Proof, timeout=step), Proof)
        expected = bind_report_data(nonce, spki_of(hello.public), purpose=PURPOSE)
        verdict = await asyncio.to_thread(
            self.gate.verify, hello.kind, proof.evidence, expected, tpm2_verifier=tpm2_verifier
        )
        ring = self.holder.ring
        if ring is None:
            raise _Refusal("no domain key yet")
        sealed = seal_ring(ring, hello.public, context=CONTEXT)
        await asyncio.to_thread(
            self.audit.append,
            "release",
            server_role=self.role,
            peer=state["peer"],
            role=hello.role,
            kind=hello.kind,
            attested=verdict.attested,
            status=verdict.status,
            measurements=dict(verdict.measurements),
            dk_version=ring.current_version,
            connection=state["connection"],
        )
        if not verdict.attested:
            log.warning("released domain-key version %d UNATTESTED to %s (role %s)", ring.current_version, *_who(state))
        else:
            log.info("released domain-key version %d to %s (role %s): %s", ring.current_version, *_who(state),
                     verdict.summary())  # fmt: skip
        writer.write(encode(Release(ok=True, dk_version=ring.current_version, sealed=sealed)))
        await writer.drain()

    async def _activate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        """Credential activation, afresh on every connection: an AK activated once is not trusted later."""
        from ehsm_kms.provisioning.attest.tpm2 import MemoryActivations, Tpm2Verifier

        verifier = Tpm2Verifier(MemoryActivations())
        identity = _expect(await read_message(reader, Identity, timeout=self.step_timeout), Identity)
        challenge, pending = await asyncio.to_thread(self.gate.tpm2_challenge, identity.identity, verifier)
        writer.write(encode(Challenge(challenge=challenge)))
        answer = _expect(await read_message(reader, Activation, timeout=self.step_timeout), Activation)
        if pending is not None:
            verifier.complete(pending, answer.answer)
        return verifier

    async def _refuse(self, writer: asyncio.StreamWriter, state: dict[str, Any], reason: str) -> None:
        ring = self.holder.ring
        try:
            await asyncio.to_thread(
                self.audit.append,
                "refuse",
                server_role=self.role,
                peer=state["peer"],
                role=state["role"],
                kind=state["kind"],
                reason=reason[:500],
                dk_version=ring.current_version if ring else 0,
                connection=state["connection"],
            )
        except errors.EhsmError as exc:
            log.error("%s", exc.message)
        log.warning("refused the domain key to %s (role %s): %s", *_who(state), reason)
        try:
            writer.write(encode(Release(ok=False, error=reason[:500])))
            async with asyncio.timeout(2.0):
                await writer.drain()
        except (Exception, asyncio.CancelledError):  # the client is gone: the refusal is recorded anyway
            return


def _expect(message: Any, kind: type[Any]) -> Any:
    if not isinstance(message, kind):
        raise ProtocolError(f"expected a {kind.__name__} message")
    return message


def _who(state: dict[str, Any]) -> tuple[str, str]:
    return state["peer"], state["role"] or "?"


def _address(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


# ---------------------------------------------------------------- the root
class Root:
    """The root's ring: opened from its sealed file, rotated and saved atomically on request."""

    def __init__(self, sealer: Sealer, data_dir: Path, holder: RingHolder, audit: ReleaseAudit) -> None:
        self.sealer = sealer
        self.path = Path(data_dir) / SEALED_FILE
        self.holder = holder
        self.audit = audit
        self._lock = asyncio.Lock()

    def open(self, *, create: bool) -> dk.DomainKeyRing:
        ring = dk.load_or_create(self.sealer, self.path, create=create)
        self.holder.replace(ring)
        return ring

    async def rotate(self) -> int:
        async with self._lock:
            held = self.holder.ring
            if held is None:
                raise errors.CoreUnavailable("the root holds no domain key")
            ring = dk.DomainKeyRing.from_bytes(held.to_bytes())
            version = ring.rotate()
            await asyncio.to_thread(dk.save, self.sealer, self.path, ring)  # saved before anyone is given it
            self.holder.replace(ring)
            await asyncio.to_thread(self.audit.append, "rotate", dk_version=version, versions=len(ring.versions))
            log.info("domain key rotated: version %d is current", version)
            return version


async def serve_admin(data_dir: Path, ops: dict[str, Callable[[], Any]]) -> asyncio.Server:
    """The admin socket: ``{op}`` -> ``{ok, ...}``; only this process's uid (or root) may ask."""
    allowed = {os.getuid(), 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, uid, _ = peer_credentials(writer)
            if uid not in allowed:
                log.warning("admin socket: refused a caller of uid %d", uid)
                await write_frame(writer, msgspec.msgpack.encode({"ok": False, "error": "not allowed"}))
                return
            request = msgspec.msgpack.decode(await read_frame(reader, timeout=10.0, limit=4096))
            op = ops.get(str(request.get("op"))) if isinstance(request, dict) else None
            if op is None:
                reply: dict[str, Any] = {"ok": False, "error": "unknown operation"}
            else:
                try:
                    reply = {"ok": True, **(await op())}
                except errors.EhsmError as exc:
                    reply = {"ok": False, "error": exc.message}
            await write_frame(writer, msgspec.msgpack.encode(reply))
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, msgspec.DecodeError, OSError):
            return
        finally:
            close_quietly(writer)

    return await serve_unix(Path(data_dir) / ADMIN_SOCKET, handle, mode=0o600)


__all__ = ["SEALED_FILE", "DkServer", "Root", "serve_admin"]
