"""Framing of the isolated core's channel: an 8-byte header (request id, body length, both u32 big-endian).

Request id 0 is reserved for log records the child sends up (it has no other file descriptor to log to).
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">II")
MAX_FRAME = 16 * 1024 * 1024
LOG_ID = 0


class ChannelError(Exception):
    """The peer broke the framing or closed the channel."""


def frame(request_id: int, body: bytes) -> bytes:
    if len(body) > MAX_FRAME:
        raise ChannelError("frame too large")
    return HEADER.pack(request_id, len(body)) + body


def parse_header(header: bytes) -> tuple[int, int]:
    request_id, length = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ChannelError("frame too large")
    return request_id, length
