"""The request body: parsing, and the envelope checks of contract section 2.1, steps 2 to 7.

Each check answers with its own message and the order is part of the contract (a body with a bad timestamp
length *and* a long nonce gets "Nonce length error"). The checks are written with the JavaScript semantics of
the original's ``_checkParams``, because that is what decides which message an existing client sees:

* "truthy" is JavaScript truthiness (``""``, ``0``, ``NaN``, ``false`` and ``null`` are falsy; ``[]`` and
  ``{}`` are not) — :func:`js_truthy`;
* ``typeof payload == 'object'`` holds for arrays too: an array payload passes the type check and then fails
  payload validation on its first required field (:func:`ehsm_kms.wire.payload.validate`), as in the original;
* ``nonce.length`` exists for strings (UTF-16 code units), arrays, and objects that have a ``length`` key; a
  number has none and passes;
* the timestamp is compared as ``Number(timestamp)`` (:func:`js_string_to_number`: whitespace trimmed, ``0x``
  hex, exponents, ``Infinity``; anything else is NaN, and NaN fails).

A falsy payload (``""``, ``0``, ``false``, ``null``) signs exactly like an absent one (the sign string skips
it), so :class:`SignedFields` carries it as ``None``; payload validation then treats it as ``{}``.

Body parsing mirrors ``express.json()`` (body-parser, strict mode), with these choices of ours:

* bodies over :data:`MAX_BODY_BYTES` (100 KiB, express's default ``"100kb"``) are refused with
  :class:`errors.BodyTooLarge`, ``{"code":400,"message":"request entity too large","result":{}}`` (express
  answers HTTP 413 with its own page, which no client can parse; we keep HTTP 200 and the envelope like every
  other error);
* an empty body is ``{}`` (then "Missing required parameters"), a UTF-8 byte order mark is skipped, and a
  top-level value that is not an object or an array is "Invalid JSON" (strict mode);
* invalid UTF-8 is "Invalid JSON" (Node would have replaced the bad bytes with U+FFFD and carried on), and so
  are a lone surrogate escape, a number too large for a double, and nesting deeper than :data:`MAX_DEPTH` (no
  action has nested values, and the sign string is rendered recursively).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from ehsm_kms import errors
from ehsm_kms.core.specs import LIMITS
from ehsm_kms.wire import sign
from ehsm_kms.wire.actions import ActionInfo
from ehsm_kms.wire.payload import utf16_len

MAX_BODY_BYTES = 100 * 1024
MAX_DEPTH = 32

_BOM = b"\xef\xbb\xbf"
_JSON_WS = b" \t\n\r"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


# ------------------------------------------------------------------------------------------------ parsing
def parse_json(body: bytes) -> Any:
    """The parsed body: a dict or a list (strict mode), ``{}`` for an empty body."""
    if len(body) > MAX_BODY_BYTES:
        raise errors.BodyTooLarge()
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    if not body:
        return {}
    start = body.lstrip(_JSON_WS)[:1]
    if start not in (b"{", b"["):
        raise errors.InvalidJson()
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise errors.InvalidJson() from None
    # Each level of nesting opens with a bracket in the body, so a body with few brackets (every normal request)
    # cannot be too deep; brackets inside strings only make this count larger, never smaller.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _too_deep(value):
        raise errors.InvalidJson()
    return value


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def is_json_content_type(content_type: str | None) -> bool:
    """Whether express.json() parses a body with this Content-Type (media type ``application/json``).

    Bodies of other types are not parsed by the original: the request is then treated as ``{}``.
    """
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


# ------------------------------------------------------------------------------------------------ JavaScript
_JS_WHITESPACE = "\t\n\v\f\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)
_JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)", re.ASCII)
_JS_NON_DECIMAL = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)", re.ASCII)
_RADIX = {"x": 16, "o": 8, "b": 2}


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def js_string_to_number(text: str) -> float:
    """JavaScript's ``Number(string)``."""
    s = text.strip(_JS_WHITESPACE)
    if not s:
        return 0.0
    if _JS_DECIMAL.fullmatch(s):
        if s.lstrip("+-") == "Infinity":
            return -math.inf if s.startswith("-") else math.inf
        return float(s)
    if _JS_NON_DECIMAL.fullmatch(s):
        try:
            return float(int(s[2:], _RADIX[s[1].lower()]))
        except OverflowError:
            return math.inf
    return math.nan


def _js_to_number(value: Any) -> float:
    """``ToNumber(ToPrimitive(value))`` for a JSON value (what ``value > 64`` compares)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return js_string_to_number(value)
    if isinstance(value, list):
        return js_string_to_number(sign._js_to_string(value))
    return math.nan  # "[object Object]"


def _js_length(value: Any) -> Any:
    """``value.length``, or None where JavaScript has ``undefined``."""
    if isinstance(value, str):
        return utf16_len(value)
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        return value.get("length")  # undefined and null compare the same against a number > 0
    return None


# ------------------------------------------------------------------------------------------------ checks
@dataclass(frozen=True, slots=True)
class SignedFields:
    """The signed top-level fields of a request that passed the envelope checks, as the client sent them."""

    appid: str
    timestamp: str
    sign: str
    nonce: Any = None  # any JSON value; None when absent
    payload: dict[str, Any] | list[Any] | None = None  # None when absent or falsy

    @property
    def fields(self) -> Mapping[str, Any]:
        """The payload's named fields (an array payload has none). Read-only: the signature covers it."""
        return self.payload if isinstance(self.payload, dict) else _EMPTY

    def sign_string(self) -> str:
        """The string the ``sign`` field must be the HMAC of (section 2.2)."""
        return sign.sign_string(self.appid, self.timestamp, self.payload, self.nonce)


def check_envelope(body: Any, action: ActionInfo | None, now_ms: int) -> SignedFields:
    """Steps 2-7 of section 2.1 for an authenticated action (``None``: an unknown one, 404 later).

    Raises the exact error of the first failing step; replay, payload rules and the signature come after.
    """
    if action is not None and not action.auth:
        raise ValueError(f"{action.name} is not an authenticated action")
    fields: Mapping[str, Any] = body if isinstance(body, dict) else _EMPTY
    appid = fields.get("appid")
    timestamp = fields.get("timestamp")
    signature = fields.get("sign")
    nonce = fields.get("nonce")
    payload = fields.get("payload")
    # 2. appid, timestamp, sign all truthy
    if not (js_truthy(appid) and js_truthy(timestamp) and js_truthy(signature)):
        raise errors.BadRequest()
    # 3. a cryptographic action needs a payload
    payload_truthy = js_truthy(payload)
    if action is not None and action.crypto and not payload_truthy:
        raise errors.BadRequest()
    # 4. types
    if not (isinstance(appid, str) and isinstance(timestamp, str) and isinstance(signature, str)):
        raise errors.ParamTypeError()
    if payload_truthy and not isinstance(payload, dict | list):
        raise errors.ParamTypeError()
    # 5. nonce length
    if nonce is not None and _js_to_number(_js_length(nonce)) > LIMITS.nonce_max_chars:
        raise errors.NonceLengthError()
    # 6. timestamp length
    if utf16_len(timestamp) != LIMITS.timestamp_chars:
        raise errors.TimestampLengthError()
    # 7. timestamp window (NaN never passes)
    if not abs(now_ms - js_string_to_number(timestamp)) < LIMITS.timestamp_window_ms:
        raise errors.TimestampError()
    return SignedFields(appid, timestamp, signature, nonce, payload if payload_truthy else None)
