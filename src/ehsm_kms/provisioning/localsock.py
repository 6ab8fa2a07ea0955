"""Local Unix sockets of the dkeyserver (admin) and the dkeycache (the cores'): peer credentials, framing, files.

Both check the connecting process's uid with ``SO_PEERCRED`` (what the kernel says, not what the peer claims)
before reading anything from it, and bound the size and time of what they read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from ehsm_kms import errors
from ehsm_kms.core.ringfetch import MAX_FRAME, frame
from ehsm_kms.core.ringfetch import read_frame as read_socket_frame

_CRED = struct.Struct("3i")
_LEN = struct.Struct(">I")


def peer_credentials(writer: asyncio.StreamWriter) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix stream socket."""
    sock: socket.socket = writer.get_extra_info("socket")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    pid, uid, gid = _CRED.unpack(raw)
    return pid, uid, gid


async def read_frame(reader: asyncio.StreamReader, *, timeout: float, limit: int = MAX_FRAME) -> bytes:
    async with asyncio.timeout(timeout):
        (length,) = _LEN.unpack(await reader.readexactly(_LEN.size))
        if length > limit:
            raise ConnectionError("frame too large")
        return await reader.readexactly(length)


async def write_frame(writer: asyncio.StreamWriter, body: bytes) -> None:
    writer.write(frame(body))
    await writer.drain()


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a killed process; refuse to remove anything that is not a socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise errors.ConfigError(f"{path} exists and is not a socket; refusing to replace it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
            return
    raise errors.ConfigError(f"another process is serving on {path}")


async def serve_unix(
    path: Path, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], *, mode: int
) -> asyncio.Server:
    """A Unix stream server at ``path`` whose socket file has ``mode`` from the start (umask while binding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_socket(path)
    old = os.umask(0o777 & ~mode)
    try:
        server = await asyncio.start_unix_server(handler, path=str(path))
    finally:
        os.umask(old)
    os.chmod(path, mode)
    return server


# ---------------------------------------------------------------- the dkeyserver's admin socket
ADMIN_SOCKET = "admin.sock"


def admin_call(data_dir: Path, op: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Ask the running dkeyserver of ``data_dir`` to do ``op`` ("rotate", "status") over its admin socket."""
    path = Path(data_dir) / ADMIN_SOCKET
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(frame(msgspec.msgpack.encode({"op": op})))
            reply = msgspec.msgpack.decode(read_socket_frame(sock))
    except (OSError, ConnectionError) as exc:
        raise errors.CoreUnavailable(f"no dkeyserver answers on {path}: {exc}") from None
    except msgspec.DecodeError:
        raise errors.InternalError("the dkeyserver sent a malformed admin reply") from None
    if not isinstance(reply, dict):
        raise errors.InternalError("the dkeyserver sent a malformed admin reply")
    if not reply.get("ok"):
        raise errors.InternalError(f"the dkeyserver refused: {reply.get('error', 'no reason given')}")
    return reply


def close_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


__all__ = [
    "ADMIN_SOCKET",
    "admin_call",
    "close_quietly",
    "peer_credentials",
    "read_frame",
    "remove_stale_socket",
    "serve_unix",
    "write_frame",
]
