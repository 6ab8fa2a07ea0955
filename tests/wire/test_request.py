"""Body parsing and the envelope checks of contract section 2.1 (steps 2-7); the cookbook's bodies (3.3a)."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.wire import envelope, payload, request, sign
from ehsm_kms.wire.actions import lookup
from ehsm_kms.wire.request import SignedFields, check_envelope, js_string_to_number, js_truthy, parse_json
from tests.wire import load_data

NOW = 1_700_000_000_000
TS = str(NOW)
APPID = "3309ecfa-d02f-49b3-a107-b47d6c7d3854"
SIGN = "OVIja9L6SIGxnQzvTaeJtU5EsXQNJ05pvcwWfHoU/Zs="
KEYID = "aac3e45a-d3dc-4791-89b6-4ada0e38e6ef"

MISSING = {"code": 400, "message": "Missing required parameters", "result": {}}
TYPE_ERROR = {"code": 400, "message": "param type error", "result": {}}
NONCE = {"code": 400, "message": "Nonce length error", "result": {}}
TS_LENGTH = {"code": 400, "message": "Timestamp length error", "result": {}}
TS_ERROR = {"code": 400, "message": "Timestamp error", "result": {}}
INVALID_JSON = {"code": 400, "message": "Invalid JSON", "result": {}}


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"appid": APPID, "timestamp": TS, "sign": SIGN, "payload": {"keyid": KEYID}}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def answer(raw: Any, action: str | None = "Encrypt", now: int = NOW) -> dict[str, Any] | SignedFields:
    """The error body a request gets from these checks, or what they return."""
    try:
        return check_envelope(raw, lookup(action) if action else None, now)
    except errors.EhsmError as exc:
        return envelope.error(exc)


# ---------------------------------------------------------------------------------------------- cookbook
@pytest.mark.parametrize(
    ("raw", "action", "expected"),
    [
        # step 2: appid, timestamp, sign all truthy
        ({}, "Encrypt", MISSING),
        ([], "Encrypt", MISSING),
        ([{"appid": APPID}], "ListKey", MISSING),
        (body(appid=...), "Encrypt", MISSING),
        (body(timestamp=...), "Encrypt", MISSING),
        (body(sign=...), "Encrypt", MISSING),
        (body(appid=""), "ListKey", MISSING),
        (body(appid=None), "ListKey", MISSING),
        (body(appid=0), "ListKey", MISSING),
        (body(appid=False), "ListKey", MISSING),
        (body(timestamp=0), "ListKey", MISSING),
        (body(sign=""), "ListKey", MISSING),
        # step 3: the 13 cryptographic actions need a truthy payload
        (body(payload=...), "Encrypt", MISSING),
        (body(payload=None), "CreateKey", MISSING),
        (body(payload=""), "Decrypt", MISSING),
        (body(payload=0), "Sign", MISSING),
        (body(payload=False), "GetPublicKey", MISSING),
        (body(payload=..., appid=5), "ImportKeyMaterial", MISSING),  # before the type check
        # step 4: types
        (body(appid=5), "Encrypt", TYPE_ERROR),
        (body(appid=[]), "Encrypt", TYPE_ERROR),  # [] is truthy
        (body(appid={}), "Encrypt", TYPE_ERROR),
        (body(appid=True), "Encrypt", TYPE_ERROR),
        (body(timestamp=1700000000000), "Encrypt", TYPE_ERROR),
        (body(sign=["x"]), "Encrypt", TYPE_ERROR),
        (body(payload="keyid=x"), "Encrypt", TYPE_ERROR),
        (body(payload="keyid=x"), "ListSecrets", TYPE_ERROR),
        (body(payload=5), "ListKey", TYPE_ERROR),
        (body(payload=True), "ListKey", TYPE_ERROR),
        (body(payload=1.5), None, TYPE_ERROR),
        # step 5: nonce length
        (body(nonce="n" * 65), "Encrypt", NONCE),
        (body(nonce="\U0001f600" * 33), "Encrypt", NONCE),  # 66 UTF-16 code units
        (body(nonce=list(range(65))), "Encrypt", NONCE),
        (body(nonce={"length": 65}), "Encrypt", NONCE),
        (body(nonce={"length": "65"}), "Encrypt", NONCE),
        (body(nonce={"length": [65]}), "Encrypt", NONCE),
        (body(nonce={"length": " 0x41 "}), "Encrypt", NONCE),
        (
            body(nonce={"length": True, "x": "n" * 100}),
            "Encrypt",
            body(nonce={"length": True, "x": "n" * 100}),
        ),
        # step 6: timestamp length (UTF-16 code units)
        (body(timestamp=TS[:-1]), "Encrypt", TS_LENGTH),
        (body(timestamp=TS + "0"), "Encrypt", TS_LENGTH),
        (body(timestamp="\U0001f600" * 7), "Encrypt", TS_LENGTH),  # 7 characters, 14 code units
        (body(timestamp=" " + TS), "Encrypt", TS_LENGTH),
        # step 7: the 10-minute window
        (body(timestamp=str(NOW - 600_000)), "Encrypt", TS_ERROR),
        (body(timestamp=str(NOW + 600_000)), "Encrypt", TS_ERROR),
        (body(timestamp="abcdefghijklm"), "Encrypt", TS_ERROR),
        (body(timestamp="1" * 13), "Encrypt", TS_ERROR),
        (body(timestamp=" " * 13), "Encrypt", TS_ERROR),  # Number("   ...") is 0
        (body(timestamp="Infinity     "), "Encrypt", TS_ERROR),
        (body(timestamp="17_0000000000"), "Encrypt", TS_ERROR),  # no numeric separators in Number()
        (body(timestamp="١٧٠٠٠٠٠٠٠٠٠٠٠"), "Encrypt", TS_ERROR),  # Arabic-Indic digits are not digits to JS
        (body(timestamp="-0x18BCFE5680"), "Encrypt", TS_ERROR),  # no sign before 0x
    ],
)
def test_cookbook_bodies(raw: Any, action: str | None, expected: Any) -> None:
    got = answer(raw, action)
    if isinstance(expected, dict) and "code" in expected:
        assert got == expected
    else:
        assert isinstance(got, SignedFields)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # missing beats everything
        (body(appid="", timestamp=5, nonce="n" * 100), MISSING),
        # crypto-without-payload beats the type error
        (body(payload=None, sign=5), MISSING),
        # the type error beats the nonce
        (body(appid=5, nonce="n" * 100, timestamp="1"), TYPE_ERROR),
        # the nonce beats the timestamp length (the contract's example)
        (body(nonce="n" * 65, timestamp="170000000000"), NONCE),
        # the timestamp length beats the window
        (body(timestamp="1"), TS_LENGTH),
    ],
)
def test_check_order(raw: Any, expected: dict[str, Any]) -> None:
    assert answer(raw, "Encrypt") == expected


def test_errors_are_the_error_classes() -> None:
    cases: list[tuple[Any, type[errors.EhsmError]]] = [
        (body(appid=...), errors.BadRequest),
        (body(appid=5), errors.ParamTypeError),
        (body(nonce="n" * 65), errors.NonceLengthError),
        (body(timestamp="1"), errors.TimestampLengthError),
        (body(timestamp="1" * 13), errors.TimestampError),
    ]
    for raw, cls in cases:
        with pytest.raises(cls):
            check_envelope(raw, lookup("Encrypt"), NOW)


# ---------------------------------------------------------------------------------------------- what passes
@pytest.mark.parametrize(
    ("timestamp", "now"),
    [
        (TS, NOW),
        (str(NOW - 599_999), NOW),
        (str(NOW + 599_999), NOW),
        ("0x18bcfe56800", NOW),  # Number("0x18bcfe56800") == 1700000000000
        ("0X18BCFE56800", NOW),
        ("1700000000e+3", NOW),
        (".17000000e+13", NOW),
        ("1.7e12       ", NOW),  # whitespace is trimmed
        ("\t\n1.7e12\u3000\ufeff\xa0\u2028 ", NOW),  # 13 characters
        ("1700000000000", NOW + 599_999),
        ("1700000000.00", 1_700_000_000),
    ],
)
def test_timestamps_in_the_window(timestamp: str, now: int) -> None:
    assert isinstance(answer(body(timestamp=timestamp), "Encrypt", now), SignedFields)


@pytest.mark.parametrize(
    "nonce",
    [
        "",
        "n" * 64,
        "\U0001f600" * 32,
        10**70,
        2374462904,
        True,
        False,
        0,
        None,
        list(range(64)),
        {},
        {"x": 1},
    ],
    ids=repr,
)
def test_nonces_that_pass(nonce: Any) -> None:
    got = answer(body(nonce=nonce), "Encrypt")
    assert isinstance(got, SignedFields)
    assert got.nonce == nonce


def test_golden_request_passes_and_signs() -> None:
    case = load_data("sign_vectors.json")["requests"][0]
    fields = check_envelope(case["body"], lookup("CreateKey"), NOW)
    assert fields == SignedFields(APPID, TS, case["sign"], None, case["payload"])
    assert fields.sign_string() == case["sign_string"]
    assert sign.signature_matches(sign.signature("44RPFy3SEqLbAahaP9PXSGQ6ABB6gctr", fields.sign_string()), fields.sign)
    payload.validate("CreateKey", fields.fields)


def test_extra_top_level_fields_are_ignored() -> None:
    fields = check_envelope(body(extra={"x": 1}, Action="Encrypt"), lookup("Encrypt"), NOW)
    assert fields.sign_string() == f"appid={APPID}&payload=keyid={KEYID}&timestamp={TS}"


@pytest.mark.parametrize("falsy", [None, "", 0, False, 0.0, ...], ids=repr)
def test_falsy_payload_of_other_actions_is_none_and_signs_like_none(falsy: Any) -> None:
    fields = check_envelope(body(payload=falsy), lookup("CreateSecret"), NOW)
    assert fields.payload is None
    assert fields.fields == {}
    assert fields.sign_string() == f"appid={APPID}&timestamp={TS}"
    if falsy is not ...:
        assert fields.sign_string() == sign.sign_string(APPID, TS, falsy)
    # validation then sees {} (the original skipped it: section 12.2.2)
    with pytest.raises(errors.PayloadError, match="The secretName cannot be empty"):
        payload.validate("CreateSecret", fields.payload)


@pytest.mark.parametrize("arr", [[], [KEYID], [{"keyid": KEYID}]], ids=repr)
def test_array_payload_passes_the_type_check_then_fails_validation(arr: list[Any]) -> None:
    fields = check_envelope(body(payload=arr), lookup("GetPublicKey"), NOW)
    assert fields.payload == arr
    assert fields.fields == {}
    assert fields.sign_string() == sign.sign_string(APPID, TS, arr)
    with pytest.raises(errors.PayloadError) as info:
        payload.validate("GetPublicKey", fields.payload)
    assert info.value.message == "Missing required parameters, The keyid cannot be empty."


def test_empty_object_payload_passes_for_crypto_actions() -> None:
    fields = check_envelope(body(payload={}), lookup("Encrypt"), NOW)
    assert fields.payload == {}
    assert fields.sign_string() == f"appid={APPID}&payload=&timestamp={TS}"


def test_unknown_action_is_checked_like_any_authenticated_one() -> None:
    assert isinstance(answer(body(payload=...), None), SignedFields)
    assert answer(body(appid=...), None) == MISSING


@pytest.mark.parametrize("name", ["Enroll", "GetVersion"])
def test_unauthenticated_actions_are_not_checked_here(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        check_envelope(body(), lookup(name), NOW)


# ---------------------------------------------------------------------------------------------- JavaScript
@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        (-0.0, False),
        (math.nan, False),
        ("", False),
        (True, True),
        (1, True),
        (-1, True),
        (" ", True),
        ("0", True),
        ("false", True),
        ([], True),
        ({}, True),
    ],
    ids=repr,
)
def test_js_truthy(value: Any, truthy: bool) -> None:
    assert js_truthy(value) is truthy


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("", 0.0),
        ("   ", 0.0),
        ("\u2028\u2029\u205f", 0.0),
        ("42", 42.0),
        (" 42 ", 42.0),
        ("+42", 42.0),
        ("-42", -42.0),
        ("4.5", 4.5),
        ("4.", 4.0),
        (".5", 0.5),
        ("-.5e1", -5.0),
        ("1e3", 1000.0),
        ("1E+3", 1000.0),
        ("1e-3", 0.001),
        ("0x1F", 31.0),
        ("0X1f", 31.0),
        ("0o17", 15.0),
        ("0b101", 5.0),
        ("Infinity", math.inf),
        ("+Infinity", math.inf),
        ("-Infinity", -math.inf),
        ("1e400", math.inf),
        ("0x" + "f" * 300, math.inf),
        ("007", 7.0),
    ],
)
def test_js_string_to_number(text: str, number: float) -> None:
    assert js_string_to_number(text) == number


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "0x",
        "0xg",
        "-0x1F",
        "+0x1F",
        "0b2",
        "0o8",
        "1_000",
        "infinity",
        "inf",
        "nan",
        "NaN",
        "1e",
        "e3",
        ".",
        "1.2.3",
        "4 2",
        "١٢",
        "\x0012",
        "12px",
        "0x1F.5",
    ],
)
def test_js_string_to_number_nan(text: str) -> None:
    assert math.isnan(js_string_to_number(text))


# ---------------------------------------------------------------------------------------------- parsing
def test_parse_json_objects_and_arrays() -> None:
    assert parse_json(b'{"a":1}') == {"a": 1}
    assert parse_json(b' \r\n\t{"a":1} ') == {"a": 1}
    assert parse_json(b"[1,2]") == [1, 2]
    assert parse_json(b'{"a":1,"a":2}') == {"a": 2}  # the last one wins, as in JSON.parse
    assert parse_json(b"\xef\xbb\xbf{}") == {}  # a UTF-8 byte order mark is skipped
    assert parse_json('{"k":"é\U0001f600"}'.encode()) == {"k": "é\U0001f600"}
    assert parse_json(b'{"n":123456789012345678901234567890}') == {"n": 1.2345678901234568e29}


@pytest.mark.parametrize("raw", [b"", b"\xef\xbb\xbf"], ids=repr)
def test_empty_body_is_an_empty_object(raw: bytes) -> None:
    assert parse_json(raw) == {}
    assert answer(parse_json(raw)) == MISSING


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{",
        b'{"a":1,}',
        b"{'a':1}",
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":1e400}',
        b'{"a":"\\ud800"}',  # a lone surrogate escape
        b'{"a":"\xff"}',  # invalid UTF-8
        b'{"a":"\xc3"}',
        b"\xfe\xff{}",
        b" ",
        b"\n\t",
        b"1",
        b"-1",
        b'"x"',
        b"null",
        b"true",
        b"false",
        b' "x"',
        b"{}{}",
        b"{} x",
        b"\x00{}",
    ],
    ids=repr,
)
def test_invalid_json(raw: bytes) -> None:
    with pytest.raises(errors.InvalidJson) as info:
        parse_json(raw)
    assert envelope.error(info.value) == INVALID_JSON


def test_body_size_limit() -> None:
    filler = request.MAX_BODY_BYTES - len(b'{"x":""}')
    at_limit = b'{"x":"' + b"a" * filler + b'"}'
    assert len(at_limit) == request.MAX_BODY_BYTES == 102_400
    assert parse_json(at_limit) == {"x": "a" * filler}
    with pytest.raises(errors.BodyTooLarge) as info:
        parse_json(at_limit + b" ")
    assert envelope.error(info.value) == {"code": 400, "message": "request entity too large", "result": {}}


def test_nesting_limit() -> None:
    def nested(depth: int) -> bytes:
        return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)

    assert parse_json(nested(request.MAX_DEPTH)) is not None
    with pytest.raises(errors.InvalidJson):
        parse_json(nested(request.MAX_DEPTH + 1))
    with pytest.raises(errors.InvalidJson):
        parse_json(b"[" * 2000 + b"]" * 2000)
    deep_in_a_list = orjson.dumps([1, [2, [3]], {"a": [[[[]]]]}])
    assert parse_json(deep_in_a_list) == [1, [2, [3]], {"a": [[[[]]]]}]


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON;charset=UTF-8", True),
        (" application/json ", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("application/vnd.api+json", False),
        ("application/jsonx", False),
        ("", False),
        (None, False),
    ],
)
def test_is_json_content_type(content_type: str | None, ok: bool) -> None:
    assert request.is_json_content_type(content_type) is ok


# ---------------------------------------------------------------------------------------------- properties
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELD = st.sampled_from(["appid", "timestamp", "sign", "nonce", "payload", "extra"])
ENVELOPE_ERRORS = (
    errors.BadRequest,
    errors.ParamTypeError,
    errors.NonceLengthError,
    errors.TimestampLengthError,
    errors.TimestampError,
)


@given(raw=st.binary(max_size=300))
def test_any_bytes_parse_or_are_invalid_json(raw: bytes) -> None:
    try:
        value = parse_json(raw)
    except errors.InvalidJson:
        return
    assert isinstance(value, dict | list)


@given(
    fields=st.dictionaries(FIELD, JSON | st.just(TS) | st.just(APPID)),
    action=st.sampled_from([None, "Encrypt", "ListKey", "CreateSecret", "RotateKey"]),
)
def test_any_body_gets_an_envelope_error_or_passes(fields: dict[str, Any], action: str | None) -> None:
    raw = parse_json(json.dumps(fields).encode())  # through the real parser (big integers become doubles)
    try:
        got = check_envelope(raw, lookup(action) if action else None, NOW)
    except ENVELOPE_ERRORS as exc:
        assert type(exc) in ENVELOPE_ERRORS
        assert envelope.error(exc)["code"] == 400
        return
    assert got.sign_string().startswith("appid=")
    try:
        payload.checked(action or "NoSuchAction", got.payload)
    except errors.PayloadError as exc:
        assert exc.message is not None and exc.message.startswith(("Missing required", "Parameter invalid"))
