"""A test-only stand-in for the machine's dkeycache: it serves the core's side of the dkeycache socket protocol
(:mod:`ehsm_kms.core.ringfetch`) on a Unix socket, sealing its ring to each request's ephemeral key with
:func:`ehsm_kms.core.ringwire.seal_ring`, exactly as the protocol says.

It stands in for the real dkeycache (``src/ehsm_kms/provisioning/``), which has its own tests in
``tests/provisioning/`` (peer credentials, the dkeyserver channel, attestation); the full cluster test uses the
real one. Here only the node's side is under test: waiting for the ring, following rotations, refusing a ring that
does not extend the one held. So the stand-in checks no peer credentials, and the test decides which ring it
serves (none, a rotated one, an unrelated one) and when.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import tempfile
import threading
from pathlib import Path

import msgspec

from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.ringfetch import CONTEXT, CacheReply, CacheRequest, frame, read_frame
from ehsm_kms.core.ringwire import seal_ring


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    cache: StandInCache


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        cache = self.server.cache  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        sock.settimeout(5)
        with contextlib.suppress(OSError, ConnectionError, msgspec.DecodeError):
            req = msgspec.msgpack.decode(read_frame(sock), type=CacheRequest)
            ring = cache.ring
            cache.requests += 1
            if ring is None:
                reply = CacheReply(ok=False, error="no domain key yet")
            else:
                reply = CacheReply(
                    ok=True, dk_version=ring.current_version, sealed=seal_ring(ring, req.public, context=CONTEXT)
                )
            sock.sendall(frame(msgspec.msgpack.encode(reply)))


class StandInCache:
    """Serves ``ring`` (None: "no domain key yet") at :attr:`socket_path` until :meth:`stop`."""

    def __init__(self, ring: DomainKeyRing | None = None) -> None:
        # A short path: Unix socket paths are limited to 107 bytes, and pytest's tmp_path can be longer.
        self._dir = Path(tempfile.mkdtemp(prefix="ehsm-dkc-"))
        self.socket_path = str(self._dir / "dkeycache.sock")
        self.ring = ring
        self.requests = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> StandInCache:
        server = _Server(self.socket_path, _Handler)
        server.cache = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            Path(self.socket_path).unlink()

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self._dir.rmdir()

    def rotate(self) -> int:
        """What the dkeyserver's rotation does to the ring the cache serves: one more version, made current."""
        assert self.ring is not None
        ring = DomainKeyRing.from_bytes(self.ring.to_bytes())
        version = ring.rotate()
        self.ring = ring
        return version
