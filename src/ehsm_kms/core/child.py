"""The isolated core's process: ``python -m ehsm_kms.core.child <fd>``.

It hardens itself before it holds any secret: not dumpable (``PR_SET_DUMPABLE`` 0, so other unprivileged processes
cannot ptrace it or read its memory), no core dumps, every file descriptor closed but its channel (0-2 are
``/dev/null``), and memory
locked (``mlockall``) where the system allows it so the domain key is never written to swap. Then it reads the
init message, opens the domain key through its sealer, runs the self-tests, and serves calls one at a time.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import resource
import signal
import socket
import sys
from typing import BinaryIO, cast

import msgspec

from ehsm_kms.core import channel
from ehsm_kms.core.bootstrap import open_ring
from ehsm_kms.core.coreconfig import CoreConfig
from ehsm_kms.core.protocol import Reply, decode_call, encode

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
MCL_CURRENT = 1
MCL_FUTURE = 2

_config_decoder = msgspec.msgpack.Decoder(CoreConfig)


def harden(keep_fd: int) -> dict[str, object]:
    """Apply the process protections; report what holds (a refused protection is reported, not fatal)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # never outlive the server that started us
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
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
    locked = libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0
    return {
        "dumpable": int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)),
        "core_limit": resource.getrlimit(resource.RLIMIT_CORE)[1],
        "mlock": locked,
    }


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
    hardening = harden(fd)
    sock = socket.socket(fileno=fd)
    log = logging.getLogger("ehsm_kms.core")
    log.addHandler(_ChannelLog(sock))
    log.setLevel(logging.INFO)
    log.propagate = False
    if hardening["dumpable"] != 0:
        log.warning("core process protection not available: prctl(PR_SET_DUMPABLE)")
    if not hardening["mlock"]:
        log.warning("core process protection not available: mlockall (memory may be swapped)")
    reader = cast(BinaryIO, sock.makefile("rb", buffering=65536))

    from ehsm_kms import errors
    from ehsm_kms.core.enclave import Enclave

    request_id, length = channel.parse_header(_read_exact(reader, channel.HEADER.size))
    try:
        cfg = _config_decoder.decode(_read_exact(reader, length))
        enclave = Enclave(open_ring(cfg), run_self_tests=cfg.run_self_tests)
        del cfg
        init_reply = Reply(
            result={"pid": os.getpid(), "dk_version": enclave.ring.current_version, "hardening": hardening}
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
