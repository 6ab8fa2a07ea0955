"""Enrollment and version: the two unauthenticated GET actions.

Enrollment is gated by ``enroll_mode``: ``open`` (anyone may enroll, as the original), ``token`` (Enroll needs a
one-time enrollment token made by ``ehsm-kms admin issue-enroll-token``) or ``closed``.
"""

from __future__ import annotations

import hashlib
import secrets

from ehsm_kms import __version__, errors
from ehsm_kms.core.protocol import Call
from ehsm_kms.service.node import Node
from ehsm_kms.storage.base import Store
from ehsm_kms.storage.records import AppRecord

# GetVersion answers what the original's clients check; our own version is reported beside it.
WIRE_VERSION = "0.3.2"
GIT_SHA = "0000000"
ENROLL_TOKEN_TTL_MS = 24 * 3600 * 1000


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


async def enroll(node: Node, mode: str, token: str | None) -> dict[str, str]:
    if mode == "closed":
        raise errors.EnrollRefused("enrollment is closed on this server")
    if mode == "token" and (not token or not await node.store.take_enroll_token(token_digest(token), node.clock_ms())):
        raise errors.EnrollRefused("enrollment needs a valid one-time enrollment token")
    made = await node.core.call(Call(op="enroll"))
    await node.store.create_app(
        AppRecord(appid=made["appid"], apikey_blob=made["apikey_blob"], created_ms=node.clock_ms())
    )
    return {"appid": made["appid"], "apikey": made["apikey"]}


async def issue_enroll_token(store: Store, now_ms: int, ttl_ms: int = ENROLL_TOKEN_TTL_MS) -> str:
    """A one-time enrollment token; only its digest is stored."""
    token = secrets.token_urlsafe(24)
    await store.put_enroll_token(token_digest(token), now_ms + ttl_ms)
    return token


def version() -> dict[str, str]:
    return {"git_sha": GIT_SHA, "version": WIRE_VERSION, "server": f"ehsm-kms {__version__}"}
