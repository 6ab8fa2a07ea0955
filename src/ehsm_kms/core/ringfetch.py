"""The core's side of the dkeycache socket: ask the machine's dkeycache for the domain-key ring.

Protocol on the Unix stream socket (one request per connection), every message a frame of a big-endian u32
length and a msgpack body of at most :data:`MAX_FRAME` bytes::

    core  -> cache   CacheRequest {v: 1, op: "ring", public: <32-byte X25519 public key>}
    cache -> core    CacheReply   {v: 1, ok: true, dk_version: n, sealed: SealedRing}
                  or CacheReply   {v: 1, ok: false, error: "why"}

The cache checks the peer's credentials (SO_PEERCRED) before it answers, and seals the ring to the request's
ephemeral key (:mod:`ehsm_kms.core.ringwire`, context ``"dkeycache"``): the ring never crosses the socket in the
clear, and a process that only watches the socket learns nothing.
"""

from __future__ import annotations

import socket
import struct

import msgspec

from ehsm_kms import errors
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.ringwire import EphemeralKey, SealedRing

MAX_FRAME = 1 << 20
_LEN = struct.Struct(">I")
CONTEXT = "dkeycache"


class CacheRequest(msgspec.Struct, frozen=True):
    public: bytes
    op: str = "ring"
    v: int = 1


class CacheReply(msgspec.Struct, frozen=True):
    ok: bool
    dk_version: int = 0
    sealed: SealedRing | None = None
    error: str = ""
    v: int = 1


def frame(body: bytes) -> bytes:
    if len(body) > MAX_FRAME:
        raise ValueError("frame too large")
    return _LEN.pack(len(body)) + body


def read_frame(sock: socket.socket) -> bytes:
    """One frame's body from a blocking socket; ConnectionError if the peer closes or sends too much."""
    (length,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    if length > MAX_FRAME:
        raise ConnectionError("frame too large")
    return _recv_exact(sock, length)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        buf += chunk
    return bytes(buf)


def fetch_ring(socket_path: str, *, timeout: float = 5.0) -> DomainKeyRing:
    """The ring from the dkeycache at ``socket_path``.

    Raises :class:`~ehsm_kms.errors.CoreUnavailable` when the cache cannot be reached or has no ring yet (the
    caller retries with backoff), and :class:`~ehsm_kms.errors.CryptoError` when the answer does not open.
    """
    key = EphemeralKey()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(frame(msgspec.msgpack.encode(CacheRequest(public=key.public))))
            raw = read_frame(sock)
    except (OSError, ConnectionError) as exc:
        raise errors.CoreUnavailable(f"the dkeycache at {socket_path} is not reachable: {exc}") from None
    try:
        reply = msgspec.msgpack.decode(raw, type=CacheReply)
    except msgspec.DecodeError:
        raise errors.CoreUnavailable("the dkeycache sent a malformed reply") from None
    if not reply.ok or reply.sealed is None:
        raise errors.CoreUnavailable(f"the dkeycache refused: {reply.error or 'no domain key'}")
    ring = key.open(reply.sealed, context=CONTEXT)
    if ring.current_version != reply.dk_version:
        raise errors.CryptoError("the dkeycache's reply names another domain-key version than its ring")
    return ring


__all__ = ["CONTEXT", "MAX_FRAME", "CacheReply", "CacheRequest", "fetch_ring", "frame", "read_frame"]
