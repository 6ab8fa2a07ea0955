"""Signed requests for tests, made by the contract's rule (the same one clients use)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from ehsm_kms.core.protocol import SignedRequest
from ehsm_kms.wire.sign import sign_request


def now_ms() -> int:
    return int(time.time() * 1000)


def signed(
    appid: str,
    apikey: str,
    payload: dict[str, Any] | None,
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> SignedRequest:
    ts = timestamp or str(now_ms())
    nc = nonce if nonce is not None else secrets.token_hex(8)
    sig = sign_request(apikey, appid, ts, payload, nc)
    return SignedRequest(appid=appid, timestamp=ts, sign=sig, payload=payload, nonce=nc)


def body(appid: str, apikey: str, payload: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    """The JSON body a client POSTs."""
    req = signed(appid, apikey, payload, **kw)
    out: dict[str, Any] = {
        "appid": req.appid,
        "timestamp": req.timestamp,
        "nonce": req.nonce,
        "sign": req.sign,
    }
    if payload is not None:
        out["payload"] = payload
    return out
