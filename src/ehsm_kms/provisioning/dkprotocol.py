"""The provisioning protocol: how a dkeycache, a worker or a recovering root gets the DK ring from a dkeyserver.

Transport: TLS 1.3 (Python's :mod:`ssl`); the server shows a certificate (given, or self-signed in its data
directory) and the client pins it with a CA or certificate file. Messages are frames of a big-endian u32 length
and a msgpack body (:func:`ehsm_kms.core.ringfetch.frame`), each a tagged struct below; any message larger than
:data:`MAX_MESSAGE`, any step slower than the server's step timeout and any connection longer than its overall
timeout ends the connection. One connection, one release::

    client -> server   Hello     {role: "cache" | "worker" | "root", kind, public: 32-byte X25519 key}
    server -> client   Nonce     {nonce: 32 fresh random bytes, used for this connection only}
    (tpm2 only)
    client -> server   Identity  {identity: the TPM's EK and AK public areas}
    server -> client   Challenge {challenge: MakeCredential for that AK under a trusted EK, or empty}
    client -> server   Activation{answer: what TPM2_ActivateCredential returned}
    client -> server   Proof     {evidence: report_data = bind_report_data(nonce, spki(public), purpose=PURPOSE)}
    server -> client   Release   {ok: true, dk_version, sealed: seal_ring(ring, public, context="dkeyserver")}
                    or Release   {ok: false, error: why}        (the server may answer this at any step)

**Why the evidence binds an in-TLS ephemeral key, not the TLS connection.** RA-TLS binds evidence to the TLS
key of a self-signed client certificate, or to exported keying material of the session. Python's :mod:`ssl`
can do neither: it refuses client certificates it cannot chain to a CA it was given (a per-connection
self-signed certificate never chains), and it has no ``export_keying_material``. So the client makes a fresh
X25519 key per connection (:class:`~ehsm_kms.core.ringwire.EphemeralKey`), sends its public half inside TLS,
and its evidence binds the key's SubjectPublicKeyInfo and the server's fresh nonce into its report data. The
server verifies that binding, then seals the ring to that key. Whoever relays or replays evidence gains
nothing: evidence made for another key names a key whose private half the replayer lacks (and the server
refuses it anyway, because the report data differ), and evidence from an earlier connection names a nonce the
server has discarded. TLS still does what it can: it hides the exchange and lets the client know it talks to
the pinned server. The ring never crosses the channel in the clear, not even inside TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ehsm_kms import errors
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.ringfetch import frame
from ehsm_kms.core.ringwire import EphemeralKey, SealedRing
from ehsm_kms.provisioning.attest import Evidence, bind_report_data

PURPOSE = "ehsm-kms dkeyserver"
CONTEXT = "dkeyserver"
ROLES = ("cache", "worker", "root")
NONCE_SIZE = 32
MAX_MESSAGE = 1 << 20  # a sealed ring of 4096 versions is about 150 KiB; evidence at most 64 KiB
_LEN = struct.Struct(">I")


class Hello(msgspec.Struct, frozen=True, tag=True):
    role: str
    kind: str
    public: bytes
    v: int = 1


class Nonce(msgspec.Struct, frozen=True, tag=True):
    nonce: bytes


class Identity(msgspec.Struct, frozen=True, tag=True):
    identity: bytes


class Challenge(msgspec.Struct, frozen=True, tag=True):
    challenge: bytes  # empty: no activation needed (the policy trusts the AK itself)


class Activation(msgspec.Struct, frozen=True, tag=True):
    answer: bytes


class Proof(msgspec.Struct, frozen=True, tag=True):
    evidence: bytes


class Release(msgspec.Struct, frozen=True, tag=True):
    ok: bool
    dk_version: int = 0
    sealed: SealedRing | None = None
    error: str = ""

    def __repr__(self) -> str:
        return f"Release(ok={self.ok}, dk_version={self.dk_version}, error={self.error!r})"


Message = Hello | Nonce | Identity | Challenge | Activation | Proof | Release
_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(Message)
M = TypeVar("M")


class ProtocolError(errors.EhsmError):
    """The peer broke the protocol (malformed, oversized or unexpected message)."""

    exit_code = errors.EXIT_CONNECTION
    default_message = "the provisioning peer broke the protocol"


class Refused(errors.EhsmError):
    """The dkeyserver refused to release the ring; the message is its reason."""

    exit_code = errors.EXIT_AUTH
    default_message = "the dkeyserver refused to release the domain key"


class Unreachable(errors.EhsmError):
    exit_code = errors.EXIT_CONNECTION
    default_message = "the dkeyserver is not reachable"


def encode(message: Message) -> bytes:
    return frame(msgspec.msgpack.encode(message))


def decode(body: bytes, expected: type[M]) -> M | Release:
    try:
        message = _decoder.decode(body)
    except msgspec.DecodeError:
        raise ProtocolError("a provisioning message is malformed") from None
    if isinstance(message, expected | Release):
        return message
    raise ProtocolError(f"expected a {expected.__name__} message, got {type(message).__name__}")


async def read_message(reader: asyncio.StreamReader, expected: type[M], *, timeout: float) -> M | Release:
    """The next message, bounded in size and time (the server's side)."""
    async with asyncio.timeout(timeout):
        (length,) = _LEN.unpack(await reader.readexactly(_LEN.size))
        if length > MAX_MESSAGE:
            raise ProtocolError("a provisioning message is too large")
        body = await reader.readexactly(length)
    return decode(body, expected)


# ---------------------------------------------------------------- endpoints and TLS
@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise errors.ConfigError(f"a dkeyserver address is HOST:PORT, not {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def client_context(ca_files: Iterable[str | Path]) -> ssl.SSLContext:
    """TLS 1.3 client context that trusts only the given CA (or pinned certificate) files."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    files = list(ca_files)
    if not files:
        raise errors.ConfigError("a dkeyserver client needs the server's CA or certificate file (--server-ca)")
    for path in files:
        try:
            ctx.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise errors.ConfigError(f"cannot load the CA file {path}: {exc}") from None
    return ctx


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise errors.ConfigError(f"cannot load the TLS certificate {cert} and key {key}: {exc}") from None
    return ctx


# ---------------------------------------------------------------- the client
class Session:
    """One client connection, step by step (tests drive the steps themselves to try what an attacker would)."""

    def __init__(self, endpoint: Endpoint, ctx: ssl.SSLContext, *, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        try:
            raw = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        except OSError as exc:
            raise Unreachable(f"the dkeyserver {endpoint} is not reachable: {exc.strerror or exc}") from None
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=endpoint.host)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise Unreachable(f"TLS with the dkeyserver {endpoint} failed: {exc}") from None
        self.sock.settimeout(timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: Message) -> None:
        try:
            self.sock.sendall(encode(message))
        except OSError as exc:
            raise Unreachable(f"the dkeyserver {self.endpoint} closed the connection: {exc}") from None

    def receive(self, expected: type[M]) -> M:
        try:
            (length,) = _LEN.unpack(self._exact(_LEN.size))
            if length > MAX_MESSAGE:
                raise ProtocolError("a provisioning message is too large")
            message = decode(self._exact(length), expected)
        except (OSError, ConnectionError) as exc:
            raise Unreachable(f"the dkeyserver {self.endpoint} closed the connection: {exc}") from None
        if isinstance(message, Release) and expected is not Release:
            raise Refused(message.error or None)
        return message  # type: ignore[return-value]

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("end of stream")
            buf += chunk
        return bytes(buf)

    def hello(self, role: str, kind: str, public: bytes) -> bytes:
        """Send the hello; the server's nonce."""
        self.send(Hello(role=role, kind=kind, public=public))
        nonce = self.receive(Nonce).nonce
        if len(nonce) != NONCE_SIZE:
            raise ProtocolError("the dkeyserver's nonce has the wrong size")
        return nonce

    def activate(self, provider: Any) -> None:
        """The tpm2 credential activation: show the identity, answer the challenge with the TPM."""
        from ehsm_kms.provisioning.attest.tpm2 import CredentialChallenge

        self.send(Identity(identity=provider.identity().encode()))
        challenge = self.receive(Challenge).challenge
        answer = provider.activate(CredentialChallenge.decode(challenge)) if challenge else b""
        self.send(Activation(answer=answer))

    def prove(self, evidence: Evidence) -> Release:
        self.send(Proof(evidence=evidence.encode()))
        return self.receive(Release)


def fetch_remote(
    endpoint: Endpoint, ctx: ssl.SSLContext, *, role: str, provider: Any, timeout: float = 30.0
) -> DomainKeyRing:
    """The ring from one dkeyserver, proving this machine with ``provider``'s evidence.

    Raises :class:`Refused` (the server said no, and why), :class:`Unreachable`, :class:`ProtocolError`, or
    CryptoError when the sealed ring does not open.
    """
    key = EphemeralKey()
    with Session(endpoint, ctx, timeout=timeout) as session:
        nonce = session.hello(role, provider.kind, key.public)
        if provider.kind == "tpm2":
            session.activate(provider)
        evidence = provider.evidence(bind_report_data(nonce, key.spki, purpose=PURPOSE))
        release = session.prove(evidence)
    if not release.ok or release.sealed is None:
        raise Refused(release.error or None)
    ring = key.open(release.sealed, context=CONTEXT)
    if ring.current_version != release.dk_version:
        raise errors.CryptoError("the dkeyserver's reply names another domain-key version than its ring")
    return ring


__all__ = [
    "CONTEXT",
    "MAX_MESSAGE",
    "PURPOSE",
    "ROLES",
    "Activation",
    "Challenge",
    "Endpoint",
    "Hello",
    "Identity",
    "Nonce",
    "Proof",
    "ProtocolError",
    "Refused",
    "Release",
    "Session",
    "Unreachable",
    "client_context",
    "fetch_remote",
    "read_message",
    "server_context",
]
