"""Signing with hard values, against the live server (contract section 2.2).

The suite's signer (``tests.e2e.sign_string``) is first checked against the worked example of section 2.4;
then the server must accept what it signs for raw text with every character that could confuse a
canonicalisation (``&``, ``=``, spaces, newlines, ``%``, quotes, non-ASCII, all printable ASCII), numeric and
odd nonces, and keys that sort differently by code point and by UTF-16 code unit.
"""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode

import pytest

from tests.e2e import (
    ABSENT,
    KEYID_ERROR,
    SIGN_ERROR,
    App,
    b64,
    now_ms,
    params_sort_str,
    sign_string,
    signature,
    success,
    unknown_keyid,
)
from tests.e2e.conftest import Keyring

# ------------------------------------------------------------------------------ the worked example (section 2.4)
APIKEY = "44RPFy3SEqLbAahaP9PXSGQ6ABB6gctr"
APPID = "3309ecfa-d02f-49b3-a107-b47d6c7d3854"
TS = "1700000000000"


def test_signer_reproduces_the_create_key_example() -> None:
    payload = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}
    text = sign_string(APPID, TS, payload)
    assert text == (
        "appid=3309ecfa-d02f-49b3-a107-b47d6c7d3854&payload=keyspec=EH_AES_GCM_256"
        "&keyusage=EH_KEYUSAGE_ENCRYPT_DECRYPT&origin=EH_INTERNAL_KEY&timestamp=1700000000000"
    )
    assert signature(APIKEY, text) == "OVIja9L6SIGxnQzvTaeJtU5EsXQNJ05pvcwWfHoU/Zs="


def test_signer_reproduces_the_list_key_example() -> None:
    text = sign_string(APPID, TS)
    assert text == "appid=3309ecfa-d02f-49b3-a107-b47d6c7d3854&timestamp=1700000000000"
    assert signature(APIKEY, text) == "py3XOEke/hkKfsqJqOQRuChc03dpMO+bukdtk431URg="


def test_signer_reproduces_the_nonce_example() -> None:
    payload = {"aad": "", "keyid": "aac3e45a-d3dc-4791-89b6-4ada0e38e6ef", "keylen": 16}
    expected = "4SnFQrrNkr934TLpjoehc9rZ2OIZdypO1+hY9adEm3A="
    for nonce in ("2374462904", 2374462904):
        text = sign_string(APPID, TS, payload, nonce)
        assert text == (
            "appid=3309ecfa-d02f-49b3-a107-b47d6c7d3854&nonce=2374462904"
            "&payload=keyid=aac3e45a-d3dc-4791-89b6-4ada0e38e6ef&keylen=16&timestamp=1700000000000"
        )
        assert signature(APIKEY, text) == expected


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("", ""),
        (None, ""),
        (0, ""),
        (0.0, ""),
        (False, ""),
        ([], ""),
        ([""], ""),
        ("0", "k=0"),
        (" ", "k= "),
        (True, "k=true"),
        (16, "k=16"),
        (1.5, "k=1.5"),
        (2.0, "k=2"),
        (1e21, "k=1e+21"),
        (2**64, "k=18446744073709552000"),
        (1.5e-7, "k=1.5e-7"),
        (0.000001, "k=0.000001"),
        (123456789012345680000.0, "k=123456789012345680000"),
        (-0.5, "k=-0.5"),
        ({}, "k="),
        ({"b": 1, "a": "x"}, "k=a=x&b=1"),
        (list(range(1, 12)), "k=0=1&1=2&10=11&2=3&3=4&4=5&5=6&6=7&7=8&8=9&9=10"),
    ],
    ids=repr,
)
def test_signer_follows_the_skipping_and_rendering_rules(value: Any, rendered: str) -> None:
    assert params_sort_str({"k": value}) == rendered


def test_signer_sorts_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16: it sorts before U+FF5E although its code point is larger.
    assert params_sort_str({"\uff5e": "1", "\U0001f600": "2", "Z": "3", "a": "4", "_": "5", "aa": "6", "a_": "7"}) == (
        "Z=3&_=5&a=4&a_=7&aa=6&\U0001f600=2&\uff5e=1"
    )


# ------------------------------------------------------------------------------ against the live server
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))  # every printable ASCII character, space included
HARD_TEXTS = [
    "a&b=c",
    "&=&=&",
    "payload=x&timestamp=1",
    "  leading and trailing spaces  ",
    "line one\nline two\r\nline three",
    "tab\there",
    "100% %41%2B+plus",
    "\"double\" and 'single' quotes and `backticks`",
    "caf\u00e9 \u4e2d\u6587 \U0001f600 \u00a0nbsp",
    "back\\slash and /slash",
    PRINTABLE,
    string.punctuation,
]


def _encrypt_payload(keyid: str, **extra: Any) -> dict[str, Any]:
    return {"keyid": keyid, "plaintext": b64(b"hard values"), **extra}


@pytest.mark.parametrize("text", HARD_TEXTS, ids=range(len(HARD_TEXTS)))
def test_raw_text_in_an_extra_payload_field_is_signed_raw(keyring: Keyring, text: str) -> None:
    app = keyring.app
    out = app.call("Encrypt", _encrypt_payload(keyring["aes256"], note=text))
    assert out["code"] == 200, out
    # The same field signed URL-encoded (what a client that "canonicalises" would send) is refused.
    payload = _encrypt_payload(keyring["aes256"], note=text)
    encoded = {**payload, "note": quote(text, safe="")}
    body = app.body(payload)
    body["sign"] = signature(app.apikey, sign_string(app.appid, body["timestamp"], encoded, body["nonce"]))
    assert app.send("Encrypt", body) == SIGN_ERROR


def test_every_printable_ascii_character_in_the_nonce(keyring: Keyring) -> None:
    app = keyring.app
    for start in range(0, len(PRINTABLE), 64):
        nonce = PRINTABLE[start : start + 64]
        assert app.call("Encrypt", _encrypt_payload(keyring["aes256"]), nonce=nonce)["code"] == 200


@pytest.mark.parametrize(
    "nonce",
    [2374462904, 1, 1.5, 2**53 - 1, 10**30, "0", " ", "a&b=c", "\u4e2d" * 64, "\U0001f600" * 32, True],
    ids=repr,
)
def test_odd_nonces(keyring: Keyring, nonce: Any) -> None:
    out = keyring.app.call("Encrypt", _encrypt_payload(keyring["aes256"]), nonce=nonce)
    assert out["code"] == 200, out


def test_no_nonce_as_the_python_and_go_sdks(keyring: Keyring) -> None:
    out = keyring.app.call("Encrypt", _encrypt_payload(keyring["aes256"]), nonce=ABSENT)
    assert out["code"] == 200, out


@pytest.mark.parametrize("nonce", [0, "", False], ids=repr)
def test_a_loosely_empty_nonce_is_left_out_of_the_string(keyring: Keyring, nonce: Any) -> None:
    app = keyring.app
    payload = _encrypt_payload(keyring["aes256"])
    body = app.body(payload, nonce=nonce)
    assert body["sign"] == signature(app.apikey, sign_string(app.appid, body["timestamp"], payload))
    assert app.send("Encrypt", body)["code"] == 200


def test_keys_sorted_by_the_contract_rule(keyring: Keyring) -> None:
    extra = {"\uff5e": "fullwidth tilde", "\U0001f600": "emoji", "Z": "upper", "_": "underscore", "aa": "x", "a_": "y"}
    out = keyring.app.call("Encrypt", _encrypt_payload(keyring["aes256"], **extra))
    assert out["code"] == 200, out


def test_code_point_order_is_refused(keyring: Keyring) -> None:
    app = keyring.app
    payload = _encrypt_payload(keyring["aes256"], **{"\uff5e": "1", "\U0001f600": "2"})
    body = app.body(payload)
    rendered = params_sort_str(payload)
    swapped = rendered.replace("\U0001f600=2&\uff5e=1", "\uff5e=1&\U0001f600=2")
    assert swapped != rendered
    text = f"appid={app.appid}&nonce={body['nonce']}&payload={swapped}&timestamp={body['timestamp']}"
    body["sign"] = signature(app.apikey, text)
    assert app.send("Encrypt", body) == SIGN_ERROR


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 16, "f": 1.5, "two": 2.0, "big": 1e21, "huge": 2**64, "small": 1.5e-7, "neg": -7, "t": True},
        {"skipped": "", "none": None, "zero": 0, "f": False, "empty": [], "blank": [""]},
        {"kept": "0", "space": " ", "obj": {}},
        {"nested": {"b": "2", "a": {"y": [1, 2], "x": "&="}}, "arr": list(range(12))},
    ],
    ids=["numbers", "skipped", "kept", "nested"],
)
def test_typed_extra_fields(keyring: Keyring, extra: dict[str, Any]) -> None:
    out = keyring.app.call("Encrypt", _encrypt_payload(keyring["aes256"], **extra))
    assert out["code"] == 200, out


def test_extra_top_level_fields_are_ignored_and_not_signed(keyring: Keyring) -> None:
    app = keyring.app
    body = app.body(_encrypt_payload(keyring["aes256"]))
    body.update({"extra": "not signed", "Action": "DeleteAllKey", "apikey": "x"})
    assert app.send("Encrypt", body)["code"] == 200


def test_empty_payload_object_signs_as_payload_equals_nothing(app: App) -> None:
    body = app.body({})
    assert sign_string(app.appid, body["timestamp"], {}, body["nonce"]).endswith(
        "&payload=&timestamp=" + body["timestamp"]
    )
    assert app.send("ListKey", body) == success({"list": []}, "successful")
    body = app.body({})
    body["sign"] = signature(app.apikey, sign_string(app.appid, body["timestamp"], ABSENT, body["nonce"]))
    assert app.send("ListKey", body) == SIGN_ERROR


def test_upper_cased_signature_from_the_docs_is_refused(keyring: Keyring) -> None:
    app = keyring.app
    body = app.body(_encrypt_payload(keyring["aes256"]))
    body["sign"] = body["sign"].upper()
    assert app.send("Encrypt", body) == SIGN_ERROR


# ------------------------------------------------------------------------------ the Python SDK's signing (2.3)


def sdk_body(app: App, payload: dict[str, Any]) -> dict[str, Any]:
    """The body the official Python SDK sends: urlencode + unquote_plus, empty strings kept, no nonce."""
    timestamp = str(now_ms())
    params: dict[str, Any] = {"appid": app.appid, "timestamp": timestamp}
    params["payload"] = unquote_plus(urlencode(sorted((k, v) for k, v in payload.items() if v is not None)))
    text = unquote_plus(urlencode(sorted((k, v) for k, v in params.items() if v is not None)))
    return {**params, "sign": signature(app.apikey, text), "payload": payload}


def test_python_sdk_signing_is_accepted(keyring: Keyring) -> None:
    app = keyring.app
    payload = {"aad": b64(b"context"), "keyid": keyring["aes256"], "plaintext": b64(b"sdk")}
    assert app.send("Encrypt", sdk_body(app, payload))["code"] == 200
    assert app.send("GenerateDataKey", sdk_body(app, {"keyid": keyring["aes256"], "keylen": 16}))["code"] == 200


def test_python_sdk_empty_aad_is_a_sign_error(keyring: Keyring) -> None:
    """The SDK signs ``aad=`` while the server drops the empty value (contract 2.3): "sign error"."""
    app = keyring.app
    payload = {"aad": "", "keyid": keyring["aes256"], "plaintext": b64(b"sdk")}
    assert app.send("Encrypt", sdk_body(app, payload)) == SIGN_ERROR
    # Signed by the contract's rule, the same payload is fine.
    assert app.call("Encrypt", payload)["code"] == 200


def test_an_unknown_key_is_answered_only_after_the_signature(keyring: Keyring) -> None:
    """A request for a key that exists nowhere is authenticated first: a bad signature is "sign error"."""
    app = keyring.app
    assert app.call("Encrypt", _encrypt_payload(unknown_keyid())) == KEYID_ERROR
    body = app.body(_encrypt_payload(unknown_keyid()), apikey="x" * 32)
    assert app.send("Encrypt", body) == SIGN_ERROR
