"""The isolated core's process: ``python -m ehsm_kms.core.child <fd>``.

It hardens itself before it holds any secret: not dumpable (``PR_SET_DUMPABLE`` 0, so other unprivileged processes
cannot ptrace it or read its memory), no core dumps, every file descriptor closed but its channel (0-2 are
``/dev/null``), and memory
locked (``mlockall``) where the system allows it so the domain key is never written to swap. Then it reads the
init message, opens the domain key through its sealer (single mode) or asks the machine's dkeycache for it (cluster
mode; without an answer it starts anyway and waits), runs the self-tests, and serves calls one at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from typing import BinaryIO, cast

import msgspec

from ehsm_kms.core import channel, hardening
from ehsm_kms.core.coreconfig import CoreConfig
from ehsm_kms.core.protocol import Reply, decode_call, encode

_config_decoder = msgspec.msgpack.Decoder(CoreConfig)


def harden(keep_fd: int) -> dict[str, object]:
    """Apply the process protections (:mod:`ehsm_kms.core.hardening`, and never outlive the server that started
    us), then close every descriptor but the channel; report what holds (a refused protection is reported)."""
    report = hardening.harden(die_with_parent=True)
    os.closerange(0, keep_fd)
    os.closerange(keep_fd + 1, 65536)
    # 0, 1 and 2 point at /dev/null, so that a library writing to stderr (GmSSL traces failed verifications
    # there) can never write into a file the core opened later and happened to get descriptor 2 for.
    for fd in range(3):
        if fd != keep_fd:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    return report


class _ChannelLog(logging.Handler):
    """Sends log records to the parent over the channel (id 0); the child has no stderr."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def emit(self, record: logging.LogRecord) -> None:
        body = msgspec.msgpack.encode({"level": record.levelno, "msg": record.getMessage()})
        with contextlib.suppress(OSError):
            self._sock.sendall(channel.frame(channel.LOG_ID, body))


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise channel.ChannelError("channel closed")
        buf += chunk
    return bytes(buf)


def serve(fd: int) -> int:
    report = harden(fd)
    sock = socket.socket(fileno=fd)
    log = logging.getLogger("ehsm_kms.core")
    log.addHandler(_ChannelLog(sock))
    log.setLevel(logging.INFO)
    log.propagate = False
    for warning in hardening.warnings_for(report):
        log.warning("core %s", warning)
    reader = cast(BinaryIO, sock.makefile("rb", buffering=65536))

    from ehsm_kms import errors
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.ops_ring import RingKeeper
    from ehsm_kms.core.ringsource import ring_source

    request_id, length = channel.parse_header(_read_exact(reader, channel.HEADER.size))
    try:
        cfg = _config_decoder.decode(_read_exact(reader, length))
        keeper = RingKeeper(ring_source(cfg))
        # Single mode: a wrong passphrase or a damaged file stops here. Cluster mode: no ring yet is no failure;
        # the core answers CoreUnavailable until the proxy's ring_refresh finds one.
        enclave = Enclave(keeper.first(), run_self_tests=cfg.run_self_tests, keeper=keeper)
        del cfg
        ring = enclave.ring_or_none
        init_reply = Reply(
            result={"pid": os.getpid(), "dk_version": ring.current_version if ring else 0, "hardening": report}
        )
    except errors.EhsmError as exc:
        sock.sendall(channel.frame(request_id, encode(Reply(error=type(exc).__name__, message=exc.message))))
        return 1
    sock.sendall(channel.frame(request_id, encode(init_reply)))

    while True:
        try:
            request_id, length = channel.parse_header(_read_exact(reader, channel.HEADER.size))
            body = _read_exact(reader, length)
        except channel.ChannelError:
            return 0
        try:
            reply = enclave.handle(decode_call(body))
        except msgspec.DecodeError:
            reply = Reply(error="CryptoError", message="Argument bad.")
        sock.sendall(channel.frame(request_id, encode(reply)))


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise SystemExit("usage: python -m ehsm_kms.core.child <fd>")
    raise SystemExit(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
