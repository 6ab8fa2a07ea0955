"""The string to sign and the signature (contract section 2.2, golden examples of 2.4 and 7)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehsm_kms.wire import sign
from tests.wire import load_data

VECTORS = load_data("sign_vectors.json")
APIKEY = VECTORS["apikey"]
APPID = VECTORS["appid"]
TIMESTAMP = VECTORS["timestamp"]


@pytest.mark.parametrize("case", VECTORS["requests"], ids=lambda c: c["name"])
def test_golden_requests(case: dict[str, Any]) -> None:
    text = sign.sign_string(APPID, TIMESTAMP, case.get("payload"), case.get("nonce"))
    assert text == case["sign_string"]
    assert sign.signature(APIKEY, text) == case["sign"]
    assert sign.sign_request(APIKEY, APPID, TIMESTAMP, case.get("payload"), case.get("nonce")) == case["sign"]
    assert sign.signature_matches(case["sign"], case["sign"])


def test_golden_request_body_is_what_the_client_sends() -> None:
    case = VECTORS["requests"][0]
    body = case["body"]
    assert sign.sign_string(body["appid"], body["timestamp"], body["payload"]) == case["sign_string"]
    assert body["sign"] == case["sign"]


def test_python_sdk_keeps_empty_strings_and_is_rejected() -> None:
    case = VECTORS["requests"][2]
    sdk_sign = sign.signature(APIKEY, case["sdk_sign_string"])
    assert sdk_sign != case["sign"]
    assert not sign.signature_matches(case["sign"], sdk_sign)


def test_numeric_nonce_signs_like_its_digits() -> None:
    case = VECTORS["requests"][2]
    assert sign.sign_string(APPID, TIMESTAMP, case["payload"], int(case["nonce"])) == case["sign_string"]


def test_upper_cased_signature_does_not_match() -> None:
    good = VECTORS["requests"][0]["sign"]
    assert not sign.signature_matches(good, good.upper())
    assert not sign.signature_matches(good, None)
    assert not sign.signature_matches(good, 123)


def test_verify_quote_result_signature() -> None:
    vq = VECTORS["verify_quote_result"]
    assert sign.render(vq["result"]) == vq["sign_string"]
    assert sign.signature(APIKEY, vq["sign_string"]) == vq["sign"]


def test_verify_quote_result_zero_is_skipped() -> None:
    ok = {**VECTORS["verify_quote_result"]["result"], "result": 0}
    assert sign.render(ok) == "mr_enclave={mr_enclave}&mr_signer={mr_signer}&nonce={nonce}".format(**ok)


# ---------------------------------------------------------------------------------------------- skipping
@pytest.mark.parametrize(
    "value",
    ["", None, 0, 0.0, -0.0, False, [], [""], [None], [[]], [[""]], [[None]], [[[]]]],
    ids=repr,
)
def test_loosely_empty_values_are_skipped(value: Any) -> None:
    assert sign.render({"a": "1", "k": value, "z": "2"}) == "a=1&z=2"


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("0", "k=0"),
        (" ", "k= "),
        (True, "k=true"),
        (1.5, "k=1.5"),
        (16, "k=16"),
        (-1, "k=-1"),
        ({}, "k="),
        ({"b": ""}, "k="),  # a nested empty object is still an object
        ({"b": {"c": None}}, "k=b="),
        ([0], "k="),  # [0] == "" is false ("0"), and its element 0 is then skipped
        (["", ""], "k="),  # "," is not "", so the array is kept; both elements are skipped
        ([[], [None]], "k="),  # likewise ("[],[null]".join is ",")
        (["x"], "k=0=x"),
        ([["x"]], "k=0=0=x"),
        ("a=b&c", "k=a=b&c"),  # raw, no URL-encoding
        ("é/+ \n", "k=é/+ \n"),
    ],
    ids=repr,
)
def test_included_values(value: Any, rendered: str) -> None:
    assert sign.render({"k": value}) == rendered


def test_array_keys_sort_as_strings() -> None:
    letters = [chr(ord("a") + i) for i in range(11)]
    assert sign.render({"k": letters}) == ("k=0=a&1=b&10=k&2=c&3=d&4=e&5=f&6=g&7=h&8=i&9=j")


def test_nested_objects_are_sorted_and_inlined() -> None:
    assert sign.render({"p": {"b": 2, "a": {"y": "1", "x": "2"}}}) == "p=a=x=2&y=1&b=2"


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    # U+1F600 is D83D DE00 in UTF-16, before U+FFFF; by code point it would come after.
    assert sign.render({"\uffff": "a", "\U0001f600": "b"}) == "\U0001f600=b&\uffff=a"
    assert sign.render({"b": 1, "B": 2, "a": 3, "_": 4}) == "B=2&_=4&a=3&b=1"


def test_top_level_order() -> None:
    text = sign.sign_string("app", "1700000000000", {"x": "1"}, "n")
    assert text == "appid=app&nonce=n&payload=x=1&timestamp=1700000000000"
    assert sign.sign_string("app", "1700000000000", {}, "") == "appid=app&payload=&timestamp=1700000000000"


# ---------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(("value", "text"), VECTORS["js_numbers"], ids=repr)
def test_js_number_formatting(value: float, text: str) -> None:
    assert sign.js_number(value) == text


def test_js_number_special_values() -> None:
    assert sign.js_number(float("inf")) == "Infinity"
    assert sign.js_number(float("-inf")) == "-Infinity"
    assert sign.js_number(float("nan")) == "NaN"


# ---------------------------------------------------------------------------------------------- property
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(payload=JSON, nonce=JSON)
def test_any_json_value_renders_and_signs(payload: Any, nonce: Any) -> None:
    text = sign.sign_string(APPID, TIMESTAMP, payload, nonce)
    assert text.startswith("appid=")
    assert text.endswith("timestamp=" + TIMESTAMP)
    mac = sign.signature(APIKEY, text)
    assert len(mac) == 44
    assert len(base64.b64decode(mac, validate=True)) == 32
    assert sign.signature_matches(mac, mac)


@given(payload=st.dictionaries(st.text(), JSON, max_size=8))
def test_plain_dict_fast_path_renders_as_the_general_rule(payload: dict[str, Any]) -> None:
    # A MappingProxyType is a Mapping but not a dict, so it always takes the general path.
    from types import MappingProxyType

    assert sign.render(payload) == sign.render(MappingProxyType(payload))


def test_fast_path_gives_way_to_utf16_order_for_non_ascii_keys() -> None:
    # U+FF61 sorts after U+1F600 by code point, before it by UTF-16 code unit (0xD83D).
    assert sign.render({"\U0001f600": "a", "\uff61": "b"}) == "\U0001f600=a&\uff61=b"
