"""Routing and transport (contract section 1): ``/ehsm`` and ``/ehsm/``, GET and POST actions, unknown actions,
other paths, body size and content type. Every answer is HTTP 200 with the envelope.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e import (
    API_NOT_FOUND,
    INVALID_JSON,
    MISSING,
    SIGN_ERROR,
    TOO_LARGE,
    App,
    b64,
    dumps,
    invalid,
)
from tests.e2e.conftest import Keyring, Kms

APIKEY_CHARS = re.compile(r"[0-9A-HJ-NP-Za-km-z]{32}")  # the contract's alphabet: no I, O, l, o
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LIMIT = 100 * 1024


@pytest.mark.parametrize("path", ["/ehsm", "/ehsm/"])
def test_get_version(kms: Kms, path: str) -> None:
    resp = kms.wire.request("GET", path, params={"Action": "GetVersion"})
    out = resp.json()
    assert out["code"] == 200 and out["message"] == "success!"
    assert out["result"]["version"] == "0.3.2"
    assert re.fullmatch(r"[0-9a-f]{7}", out["result"]["git_sha"])
    # An enclave-style result: keys in alphabetical order.
    assert list(out["result"]) == sorted(out["result"])
    assert resp.text.startswith('{"code":200,"message":"success!","result":{"git_sha":"')


@pytest.mark.parametrize("path", ["/ehsm", "/ehsm/"])
def test_enroll(kms: Kms, path: str) -> None:
    resp = kms.wire.request("GET", path, params={"Action": "Enroll"})
    out = resp.json()
    assert out["code"] == 200 and out["message"] == "successful"
    assert list(out["result"]) == ["apikey", "appid"]
    assert APIKEY_CHARS.fullmatch(out["result"]["apikey"])
    assert UUID.fullmatch(out["result"]["appid"])
    app = App(kms.wire, out["result"]["appid"], out["result"]["apikey"])
    assert app.ok("ListKey") == {"list": []}
    # Every enrollment is a new app.
    again = kms.wire.get("Enroll", path=path)["result"]
    assert again["appid"] != app.appid and again["apikey"] != app.apikey


@pytest.mark.parametrize("path", ["/ehsm", "/ehsm/"])
def test_post_on_both_paths(keyring: Keyring, path: str) -> None:
    out = keyring.app.send("Encrypt", keyring.app.body({"keyid": keyring["aes256"], "plaintext": b64(b"p")}), path=path)
    assert out["code"] == 200, out


@pytest.mark.parametrize(
    "action", ["NoSuchAction", "encrypt", "ENCRYPT", "DeleteALLKey", "GenHmac", "GenTokenHmac", ""]
)
def test_unknown_action_is_api_not_found_after_authentication(app: App, action: str) -> None:
    assert app.call(action) == API_NOT_FOUND
    assert app.call(action, {"keyid": "x"}) == API_NOT_FOUND
    assert app.call(action, apikey="Q" * 32) == SIGN_ERROR


def test_post_without_action(app: App) -> None:
    assert app.wire.post(None, app.body()) == API_NOT_FOUND


@pytest.mark.parametrize("action", ["Enroll", "GetVersion"])
def test_post_of_a_get_action(kms: Kms, app: App, action: str) -> None:
    assert app.call(action) == API_NOT_FOUND
    assert kms.wire.post(action, content=b"") == API_NOT_FOUND
    assert kms.wire.post(action, content=b"{") == API_NOT_FOUND


def test_get_of_a_post_action(kms: Kms, app: App) -> None:
    for action in ("ListKey", "Encrypt", "CreateKey", "DeleteAllKey"):
        assert kms.wire.get(action) == MISSING
    # Even signed, a POST action sent as GET is not an action.
    for action in ("ListKey", "DeleteAllKey"):
        body = app.body()
        assert kms.wire.envelope("GET", "/ehsm/", params={"Action": action}, body=body) == API_NOT_FOUND


@pytest.mark.parametrize("path", ["/", "/ehsm/x", "/favicon.ico", "/EHSM"])
def test_other_paths(kms: Kms, path: str) -> None:
    """The original's auth middleware ran on every path: probes of ``/`` got a 400 with HTTP 200."""
    assert kms.wire.get(None, path=path) == MISSING
    assert kms.wire.post(None, path=path, content=b"") == MISSING


def test_other_http_methods(kms: Kms) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        assert kms.wire.envelope(method, "/ehsm/", params={"Action": "Encrypt"}) == MISSING


def test_body_size_limit(keyring: Keyring) -> None:
    """express.json's 100 kB: 102400 bytes are parsed, one more is "request entity too large"."""
    app = keyring.app
    body = app.body({"keyid": keyring["aes256"], "plaintext": b64(b"p")})
    body["padding"] = ""  # an extra top-level field: ignored and not signed
    size = len(dumps(body))
    body["padding"] = "x" * (LIMIT - size)
    content = dumps(body)
    assert len(content) == LIMIT
    assert app.wire.post("Encrypt", content=content)["code"] == 200
    body = app.body({"keyid": keyring["aes256"], "plaintext": b64(b"p")})
    body["padding"] = "x" * (LIMIT - size + 1)
    content = dumps(body)
    assert len(content) == LIMIT + 1
    assert app.wire.post("Encrypt", content=content) == TOO_LARGE
    assert app.wire.post("Encrypt", content=b"{" * (LIMIT + 1)) == TOO_LARGE
    assert app.wire.post("Encrypt", content=b" " * (5 * LIMIT)) == TOO_LARGE


def test_large_but_allowed_payload_field(keyring: Keyring) -> None:
    """A large signed payload is fine (the original failed sign strings over about 9 000 bytes)."""
    app = keyring.app
    payload = {"keyid": keyring["aes256"], "plaintext": b64(b"p" * 6144), "aad": b64(b"a" * 6144), "note": "n" * 60_000}
    assert app.call("Encrypt", payload)["code"] == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_not_parsed(keyring: Keyring, content_type: str | None) -> None:
    """express.json only parses ``application/json``; other bodies are ``{}`` (contract section 1)."""
    app = keyring.app
    content = dumps(app.body({"keyid": keyring["aes256"], "plaintext": b64(b"p")}))
    assert app.wire.post("Encrypt", content=content, content_type=content_type) == MISSING
    assert app.wire.post("Encrypt", content=b"{not json", content_type=content_type) == MISSING


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_content_type_variants(keyring: Keyring, content_type: str) -> None:
    app = keyring.app
    content = dumps(app.body({"keyid": keyring["aes256"], "plaintext": b64(b"p")}))
    assert app.wire.post("Encrypt", content=content, content_type=content_type)["code"] == 200
    assert app.wire.post("Encrypt", content=b"{", content_type=content_type) == INVALID_JSON


def test_body_encodings(keyring: Keyring) -> None:
    """A UTF-8 byte order mark is skipped; escaped and raw non-ASCII sign the same."""
    app = keyring.app
    payload = {"keyid": keyring["aes256"], "plaintext": b64(b"p"), "note": "caf\u00e9 \U0001f600"}
    assert app.wire.post("Encrypt", content=b"\xef\xbb\xbf" + dumps(app.body(payload)))["code"] == 200
    escaped = json.dumps(app.body(payload), ensure_ascii=True).encode()
    assert b"\\ud83d" in escaped
    assert app.wire.post("Encrypt", content=escaped)["code"] == 200
    spaced = json.dumps(app.body(payload), indent=4).encode()
    assert app.wire.post("Encrypt", content=spaced)["code"] == 200


def test_duplicate_keys_take_the_last_value(keyring: Keyring) -> None:
    """``JSON.parse`` keeps the last of duplicate keys; the signature covers that value."""
    app = keyring.app
    body = app.body({"keyid": keyring["aes256"], "plaintext": b64(b"last")})
    text = dumps(body).decode()
    text = text.replace('"payload":{', '"payload":{"plaintext":"Zmlyc3Q=",', 1)
    out = app.wire.post("Encrypt", content=text.encode())
    assert out["code"] == 200, out
    opened = app.ok("Decrypt", {"keyid": keyring["aes256"], "ciphertext": out["result"]["ciphertext"]})
    assert opened == {"plaintext": b64(b"last")}


def test_query_string_only_names_the_action(keyring: Keyring) -> None:
    """Credentials in the query string are not credentials."""
    app = keyring.app
    params = {"Action": "ListKey", "appid": app.appid, "timestamp": "1", "sign": "x"}
    assert app.wire.envelope("POST", "/ehsm/", params=params, content=b"") == MISSING
    body = app.body({"keyid": keyring["aes256"], "plaintext": "@@@@"})
    assert app.wire.envelope("POST", "/ehsm/", params={"Action": "Encrypt", "x": "y"}, body=body) == invalid(
        "plaintext", "not a vailed base64 string."
    )
