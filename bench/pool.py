"""Pre-signed request pools: N unique requests, signed by the contract's rule shortly before a run, one per line.

Every request gets its own nonce and the current timestamp, so the server checks each one exactly as it checks a
client's: timestamp window, signature (in the core), replay record (in the store). Pools are made right before the
run that replays them, well inside the server's 10-minute window.

Signing is the SDK's rule (contract section 2.2). For the flat payloads of the workloads (string and integer values)
the string to sign is built directly (sorted ``k=v`` pairs), which is several times faster than the general renderer;
the first request of every pool is checked against :func:`ehsm_kms.wire.sign.sign_string`, and any payload that is
not flat goes through the general renderer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ehsm_kms.wire.sign import sign_string

Payload = dict[str, Any] | None
BodyMaker = Callable[[int], bytes]


def _flat_value(value: Any) -> bool:
    if isinstance(value, str):
        return value.isascii()
    return type(value) is int and -(2**53) < value < 2**53


def _flat(payload: dict[str, Any]) -> bool:
    """ASCII keys and ASCII string or safe-integer values: rendered as plain sorted ``k=v`` pairs."""
    return all(isinstance(k, str) and k.isascii() and _flat_value(v) for k, v in payload.items())


def _fast_sign_string(appid: str, timestamp: str, payload: Payload, nonce: str) -> str:
    parts = [f"appid={appid}", f"nonce={nonce}"]
    if payload is not None:
        parts.append("payload=" + "&".join(f"{k}={v}" for k, v in sorted(payload.items()) if v not in ("", 0)))
    parts.append(f"timestamp={timestamp}")
    return "&".join(parts)


class Signer:
    """Makes request bodies for one app, each with a fresh nonce and the current time."""

    def __init__(self, appid: str, apikey: str) -> None:
        self.appid = appid
        self._key = apikey.encode("utf-8")
        self._prefix = secrets.token_hex(6)
        self._counter = 0
        self._checked = False

    def body(self, payload: Payload) -> bytes:
        self._counter += 1
        nonce = f"{self._prefix}{self._counter:010x}"
        timestamp = str(time.time_ns() // 1_000_000)
        if payload is None or _flat(payload):
            message = _fast_sign_string(self.appid, timestamp, payload, nonce)
            if not self._checked:
                if message != sign_string(self.appid, timestamp, payload, nonce):
                    raise AssertionError("the fast string to sign differs from ehsm_kms.wire.sign")
                self._checked = True
        else:
            message = sign_string(self.appid, timestamp, payload, nonce)
        sign = base64.b64encode(hmac.digest(self._key, message.encode("utf-8"), hashlib.sha256)).decode("ascii")
        out: dict[str, Any] = {"appid": self.appid, "timestamp": timestamp, "nonce": nonce}
        if payload is not None:
            out["payload"] = payload
        out["sign"] = sign
        return orjson.dumps(out)

    def recheck(self) -> None:
        """Check the fast path again on the next body (once per pool)."""
        self._checked = False


def write_pool(path: Path, count: int, make: BodyMaker) -> None:
    """``count`` bodies from ``make(i)``, one per line (JSON never contains a raw newline)."""
    with path.open("wb") as out:
        for i in range(count):
            out.write(make(i))
            out.write(b"\n")
