"""End-to-end suite: a live ``ehsm-kms serve`` on a loopback port, run against SQLite and PostgreSQL.

Requests are signed by :func:`sign_string` below, written from the text of the wire contract's section 2.2
and checked against its worked example (section 2.4, ``test_signing.py``). It deliberately does not call
``ehsm_kms.wire``: the suite checks the server against the contract, not against the server's own code.

Every response must be HTTP 200 with a JSON envelope (contract section 1); :meth:`Wire.envelope` asserts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

# ------------------------------------------------------------------------------------------ expected bodies


def node_error(code: int, message: str) -> dict[str, Any]:
    """An error the original's Node layer produced: ``"result": {}``."""
    return {"code": code, "message": message, "result": {}}


def enclave_error(code: int, message: str) -> dict[str, Any]:
    """An error the original's enclave produced: ``"result": null``."""
    return {"code": code, "message": message, "result": None}


MISSING = node_error(400, "Missing required parameters")
INVALID_JSON = node_error(400, "Invalid JSON")
PARAM_TYPE = node_error(400, "param type error")
NONCE_LENGTH = node_error(400, "Nonce length error")
TIMESTAMP_LENGTH = node_error(400, "Timestamp length error")
TIMESTAMP_ERROR = node_error(400, "Timestamp error")
REPLAY = node_error(400, "Timestamp can't be repeated in 20 minutes")
SIGN_ERROR = node_error(400, "sign error")
KEYID_ERROR = node_error(400, "keyid error")
KEYID_DISABLED = node_error(400, "keyid is disabled")
NOT_FIND_KEYID = node_error(400, "not find this keyid")
API_NOT_FOUND = node_error(404, "API Not Found")
TOO_LARGE = node_error(400, "request entity too large")
IMPORT_TOKEN_FAILED = node_error(500, "ImportToken failed.")
SERVER_EXCEPTION = enclave_error(500, "Server exception.")
DECRYPTION_FAILED = enclave_error(400, "Decryption failed, Please confirm that your parameters are correct.")
DATAKEY_FAILED = enclave_error(400, "Failed, Please confirm that your parameters are correct.")
IMPORT_FAILED = enclave_error(500, "Import key failed.")


def missing(field: str) -> dict[str, Any]:
    return node_error(400, f"Missing required parameters, The {field} cannot be empty.")


def invalid(field: str, what: str) -> dict[str, Any]:
    """``Parameter invalid, The <field> <what>`` (contract section 3.1)."""
    return node_error(400, f"Parameter invalid, The {field} {what}")


def success(result: Any, message: str = "success!") -> dict[str, Any]:
    return {"code": 200, "message": message, "result": result}


# ------------------------------------------------------------------------------------------ signing (section 2.2)


def _js_number(value: float) -> str:
    """``String(number)`` by ECMAScript's Number::toString. A JSON number is a double to JavaScript, so a
    large integer is rendered as the double it becomes (2**64 is "18446744073709552000")."""
    if isinstance(value, int) and abs(value) < 2**53:
        return str(value)
    value = float(value)
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _js_number(-value)
    # The shortest digits s (k of them) that round-trip, and n with value = 0.s * 10**n.
    exact = Decimal(repr(value)).normalize().as_tuple()
    s = "".join(map(str, exact.digits))
    k = len(s)
    n = k + int(exact.exponent)
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + s
    e = n - 1
    return s[0] + ("." + s[1:] if k > 1 else "") + ("e+" if e >= 0 else "e-") + str(abs(e))


def _js_join(value: Any) -> str:
    """``String(value)`` as ``Array.prototype.join`` writes an element (null becomes "")."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _js_number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(_js_join(v) for v in value)
    return "[object Object]"


def _loosely_empty(value: Any) -> bool:
    """JavaScript's ``value == ''`` or ``value == null``: the values the server leaves out of the string."""
    if value is None or value is False:
        return True
    if value is True:
        return False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value == ""
    if isinstance(value, list):
        return _js_join(value) == ""
    return False


def params_sort_str(obj: Mapping[str, Any] | Sequence[Any]) -> str:
    """The original's ``params_sort_str``: keys in UTF-16 code-unit order, raw ``k=v`` joined by ``&``,
    objects and arrays (keys "0", "1", ...) rendered recursively, loosely empty values skipped."""
    items = list(obj.items()) if isinstance(obj, Mapping) else [(str(i), v) for i, v in enumerate(obj)]
    items.sort(key=lambda kv: kv[0].encode("utf-16-be"))
    parts = []
    for key, value in items:
        if _loosely_empty(value):
            continue
        text = params_sort_str(value) if isinstance(value, Mapping | list) else _js_join(value)
        parts.append(f"{key}={text}")
    return "&".join(parts)


ABSENT: Any = object()
"""A top-level field that is not sent at all (``None`` sends JSON ``null``)."""


def sign_string(appid: Any, timestamp: Any, payload: Any = ABSENT, nonce: Any = ABSENT) -> str:
    """The string the server verifies: exactly ``appid``, ``nonce``, ``timestamp`` and ``payload``."""
    fields = {"appid": appid, "timestamp": timestamp}
    if nonce is not ABSENT:
        fields["nonce"] = nonce
    if payload is not ABSENT:
        fields["payload"] = payload
    return params_sort_str(fields)


def signature(apikey: str, text: str) -> str:
    """``base64(HMAC-SHA256(apikey, UTF-8(text)))``, plain base64, case kept."""
    return base64.b64encode(hmac.new(apikey.encode(), text.encode("utf-8"), hashlib.sha256).digest()).decode()


def now_ms() -> int:
    return int(time.time() * 1000)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# ------------------------------------------------------------------------------------------ transport


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (non-ASCII sent raw, as most clients do)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Wire:
    """One connection pool to a live server. Every answer must be HTTP 200 with a JSON envelope."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=60.0)

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str = "/ehsm/",
        *,
        params: Mapping[str, str] | None = None,
        body: Any = ABSENT,
        content: bytes | None = None,
        content_type: str | None = "application/json",
    ) -> httpx.Response:
        if body is not ABSENT:
            content = dumps(body)
        headers = {"content-type": content_type} if content_type and content is not None else {}
        resp = self.http.request(method, path, params=params, content=content, headers=headers)
        assert resp.status_code == 200, (resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("application/json"), resp.headers
        return resp

    def envelope(self, method: str, path: str = "/ehsm/", **kw: Any) -> dict[str, Any]:
        out: dict[str, Any] = self.request(method, path, **kw).json()
        assert set(out) <= {"code", "message", "result"}, out
        return out

    def post(self, action: str | None, body: Any = ABSENT, *, path: str = "/ehsm/", **kw: Any) -> dict[str, Any]:
        params = {"Action": action} if action is not None else None
        return self.envelope("POST", path, params=params, body=body, **kw)

    def get(self, action: str | None, *, path: str = "/ehsm", **params: str) -> dict[str, Any]:
        query = {"Action": action, **params} if action is not None else params
        return self.envelope("GET", path, params=query)

    def enroll(self, *, path: str = "/ehsm", **params: str) -> App:
        out = self.get("Enroll", path=path, **params)
        assert out["code"] == 200, out
        return App(self, out["result"]["appid"], out["result"]["apikey"])


@dataclass
class App:
    """An enrolled app: its credentials and the server it talks to."""

    wire: Wire
    appid: str
    apikey: str

    def body(
        self,
        payload: Any = ABSENT,
        *,
        nonce: Any = None,
        timestamp: str | None = None,
        apikey: str | None = None,
    ) -> dict[str, Any]:
        """A signed body. ``nonce=None`` draws a random one; ``ABSENT`` sends none (as the Python SDK)."""
        if nonce is None:
            nonce = secrets.token_hex(8)
        ts = timestamp if timestamp is not None else str(now_ms())
        out: dict[str, Any] = {"appid": self.appid, "timestamp": ts}
        if nonce is not ABSENT:
            out["nonce"] = nonce
        if payload is not ABSENT:
            out["payload"] = payload
        out["sign"] = signature(apikey or self.apikey, sign_string(self.appid, ts, payload, nonce))
        return out

    def send(self, action: str, body: Any, **kw: Any) -> dict[str, Any]:
        return self.wire.post(action, body, **kw)

    def call(self, action: str, payload: Any = ABSENT, **kw: Any) -> dict[str, Any]:
        return self.send(action, self.body(payload, **kw))

    def ok(self, action: str, payload: Any = ABSENT, **kw: Any) -> dict[str, Any]:
        out = self.call(action, payload, **kw)
        assert out["code"] == 200, (action, out)
        result: dict[str, Any] = out["result"]
        return result

    def raw(self, action: str, payload: Any = ABSENT) -> str:
        """The response text exactly as the server wrote it (for key-order checks)."""
        return self.wire.request("POST", params={"Action": action}, body=self.body(payload)).text

    def create_key(self, keyspec: str, usage: str = "ENCRYPT_DECRYPT", origin: str = "INTERNAL") -> str:
        result = self.ok(
            "CreateKey",
            {"keyspec": keyspec, "origin": f"EH_{origin}_KEY", "keyusage": f"EH_KEYUSAGE_{usage}"},
        )
        keyid: str = result["keyid"]
        return keyid


def unknown_keyid() -> str:
    return str(uuid.uuid4())
