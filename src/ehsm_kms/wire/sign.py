"""The string to sign and the request signature, exactly as eHSM-KMS verifies them (contract section 2.2).

The original renders the signed fields with JavaScript semantics, and existing clients sign what it renders, so this
module reproduces those semantics rather than anything cleaner:

* keys sorted by UTF-16 code units (JavaScript's default sort), values concatenated raw (no URL-encoding);
* a value is skipped when it is loosely equal to ``""`` or to ``null``: ``""``, ``null``, ``0``, ``false``, ``[]``,
  ``[""]`` and any array whose ``join(",")`` is empty;
* objects and arrays are rendered recursively and inlined (``payload=k1=v1&k2=v2``); arrays use the keys
  ``"0"``, ``"1"`` ... sorted as strings;
* numbers are rendered as JavaScript's ``String(number)`` does, ``true`` as ``true``.

Pure functions: the server, the core and the SDK all call these.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

SIGNED_FIELDS = ("appid", "nonce", "timestamp", "payload")
_MAX_SAFE_INT = 2**53


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def js_number(value: float | int) -> str:
    """JavaScript's ``String(number)`` for a JSON number."""
    if isinstance(value, bool):  # pragma: no cover - callers handle booleans first
        return "true" if value else "false"
    if isinstance(value, int):
        if -_MAX_SAFE_INT < value < _MAX_SAFE_INT:
            return str(value)
        value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest round-trip digits, as JavaScript does; only the layout differs.
    dec = Decimal(repr(abs(value))).normalize()
    tup = dec.as_tuple()
    digits = "".join(str(d) for d in tup.digits)
    point = len(digits) + int(tup.exponent)  # value = 0.digits * 10**point
    k = len(digits)
    n = point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    exp = f"e{'+' if e >= 0 else '-'}{abs(e)}"
    if k == 1:
        return sign + digits + exp
    return sign + digits[0] + "." + digits[1:] + exp


def _js_to_string(value: Any) -> str:
    """JavaScript's ``String(value)`` (used by the loose comparison and for array elements)."""
    if value is None:
        return ""  # inside Array.prototype.join, null and undefined become ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return ",".join(_js_to_string(v) for v in value)
    return "[object Object]"


def _loosely_empty(value: Any) -> bool:
    """``value == ''`` or ``value == null`` under JavaScript's loose equality."""
    if value is None:
        return True
    if isinstance(value, bool):
        return value is False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value == ""
    if isinstance(value, list | tuple):
        # [] == '' compares ToPrimitive([]) = [].join(",") with "" (string comparison).
        return _js_to_string(value) == ""
    return False  # objects: "[object Object]" != ""


def _render_plain(obj: dict[str, Any]) -> str | None:
    """:func:`render` for the common case, or None to take the general path.

    The common case: a ``dict`` (what JSON decoding gives) whose keys are all ASCII, so that sorting by code
    point is sorting by UTF-16 code unit; values that are text are appended without the general path's
    type dispatch. Anything else (nested values included) is rendered by the general rules.
    """
    try:
        keys = sorted(obj)
    except TypeError:
        return None
    parts: list[str] = []
    for key in keys:
        if type(key) is not str or not key.isascii():
            return None
        value = obj[key]
        if type(value) is str:
            if value:
                parts.append(f"{key}={value}")
        elif _loosely_empty(value):
            continue
        elif isinstance(value, Mapping | list | tuple):
            parts.append(f"{key}={render(value)}")
        else:
            parts.append(f"{key}={_js_to_string(value)}")
    return "&".join(parts)


def render(obj: Mapping[str, Any] | list[Any] | tuple[Any, ...]) -> str:
    """``params_sort_str`` of the original service, for an object or an array."""
    if type(obj) is dict:
        plain = _render_plain(obj)
        if plain is not None:
            return plain
    if isinstance(obj, Mapping):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in obj.items()]
    else:
        items = [(str(i), v) for i, v in enumerate(obj)]
    items.sort(key=lambda kv: _utf16_key(kv[0]))
    parts: list[str] = []
    for key, value in items:
        if _loosely_empty(value):
            continue
        if isinstance(value, Mapping | list | tuple):
            parts.append(f"{key}={render(value)}")
        else:
            parts.append(f"{key}={_js_to_string(value)}")
    return "&".join(parts)


def sign_string(
    appid: Any,
    timestamp: Any,
    payload: Any = None,
    nonce: Any = None,
    *,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The string the signature covers: the four signed top-level fields only."""
    fields: dict[str, Any] = {"appid": appid, "timestamp": timestamp}
    if nonce is not None:
        fields["nonce"] = nonce
    if payload is not None:
        fields["payload"] = payload
    if extra:
        fields.update(extra)
    return render(fields)


def to_utf8(text: str) -> bytes:
    """UTF-8 as Node's Buffer makes it: a lone surrogate becomes U+FFFD instead of an error."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return fixed.encode("utf-8")


def signature(apikey: str | bytes, message: str) -> str:
    """base64(HMAC-SHA256(apikey, UTF-8(message))), the value of the ``sign`` field."""
    key = apikey.encode("utf-8") if isinstance(apikey, str) else apikey
    digest = hmac.new(key, to_utf8(message), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_request(
    apikey: str | bytes, appid: str, timestamp: str, payload: Mapping[str, Any] | None, nonce: str | None
) -> str:
    """The ``sign`` value a client sends for these fields."""
    return signature(apikey, sign_string(appid, timestamp, payload, nonce))


def signature_matches(expected: str, given: Any) -> bool:
    """Constant-time comparison of two base64 signatures (DESIGN invariant 7)."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode("ascii"), to_utf8(given))
