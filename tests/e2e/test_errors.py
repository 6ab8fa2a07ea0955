"""The error cookbook (contract section 3.3a) against the live server: exact bodies, HTTP 200 for every one.

Where we differ from the original on purpose, the test says so:

* an unknown appid gets a message (the original sent none); code and ``result`` are the original's;
* another app's key answers exactly like an unknown key ("keyid error"; the original said "appid error",
  an existence oracle, section 12.1.12);
* the replay record is written only after the signature verified, keyed on the whole signed request, and
  shared through the store (section 12.1.8): an unauthenticated request burns nothing, and two different
  requests in the same millisecond do not collide;
* a request without its payload is validated as ``{}`` (the original skipped validation, section 12.2.2).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import (
    ABSENT,
    DECRYPTION_FAILED,
    INVALID_JSON,
    KEYID_DISABLED,
    KEYID_ERROR,
    MISSING,
    NONCE_LENGTH,
    NOT_FIND_KEYID,
    PARAM_TYPE,
    REPLAY,
    SERVER_EXCEPTION,
    SIGN_ERROR,
    TIMESTAMP_ERROR,
    TIMESTAMP_LENGTH,
    App,
    Wire,
    b64,
    invalid,
    missing,
    now_ms,
    unknown_keyid,
)
from tests.e2e.conftest import Keyring, Kms

CRYPTO_ACTIONS = [
    "CreateKey",
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "Sign",
    "Verify",
    "AsymmetricEncrypt",
    "AsymmetricDecrypt",
    "ExportDataKey",
    "GetPublicKey",
    "ImportKeyMaterial",
    "GetParametersForImport",
]


def _enc(keyid: str) -> dict[str, Any]:
    return {"keyid": keyid, "plaintext": b64(b"cookbook")}


# ------------------------------------------------------------------------------ body and envelope


@pytest.mark.parametrize(
    "content",
    [b"{", b"not json", b'{"appid": }', b"'single'", b'"a string"', b"123", b"null", b"\xff\xfe{}", b'{"a":1}x'],
    ids=repr,
)
def test_invalid_json(kms: Kms, content: bytes) -> None:
    assert kms.wire.post("Encrypt", content=content) == INVALID_JSON


@pytest.mark.parametrize("drop", ["appid", "timestamp", "sign"])
def test_missing_envelope_field(keyring: Keyring, drop: str) -> None:
    app = keyring.app
    body = app.body(_enc(keyring["aes256"]))
    del body[drop]
    assert app.send("Encrypt", body) == MISSING
    for falsy in ("", None, 0, False):
        assert app.send("Encrypt", {**app.body(_enc(keyring["aes256"])), drop: falsy}) == MISSING


def test_empty_and_non_object_bodies(kms: Kms) -> None:
    assert kms.wire.post("Encrypt", content=b"") == MISSING
    assert kms.wire.post("Encrypt", body={}) == MISSING
    assert kms.wire.post("ListKey", body=[]) == MISSING
    assert kms.wire.post("ListKey", body=["appid", "timestamp", "sign"]) == MISSING


@pytest.mark.parametrize("action", CRYPTO_ACTIONS)
def test_crypto_action_without_payload(app: App, action: str) -> None:
    assert app.call(action) == MISSING
    for falsy in (None, "", 0, False):
        assert app.call(action, falsy) == MISSING, falsy


@pytest.mark.parametrize(
    ("field", "value"),
    [("appid", 12345), ("appid", ["x"]), ("timestamp", 1700000000000), ("sign", {"a": 1}), ("sign", True)],
    ids=["appid-int", "appid-list", "timestamp-int", "sign-object", "sign-true"],
)
def test_param_type_error(keyring: Keyring, field: str, value: Any) -> None:
    body = {**keyring.app.body(_enc(keyring["aes256"])), field: value}
    assert keyring.app.send("Encrypt", body) == PARAM_TYPE


@pytest.mark.parametrize("payload", ["a string", 42, True], ids=repr)
def test_payload_not_an_object(app: App, payload: Any) -> None:
    assert app.call("Encrypt", payload) == PARAM_TYPE
    assert app.call("ListKey", payload) == PARAM_TYPE


def test_array_payload_fails_on_its_first_required_field(app: App) -> None:
    """``typeof [] == 'object'``: an array passes the type check, then has none of the named fields."""
    assert app.call("Encrypt", ["keyid", "plaintext"]) == missing("keyid")
    assert app.call("CreateKey", [1]) == missing("keyspec")


def test_nonce_length(keyring: Keyring) -> None:
    app, payload = keyring.app, _enc(keyring["aes256"])
    assert app.call("Encrypt", payload, nonce="n" * 64)["code"] == 200
    assert app.call("Encrypt", payload, nonce="n" * 65) == NONCE_LENGTH
    # JavaScript's length counts UTF-16 code units: 32 emoji are 64, 33 are 66.
    assert app.call("Encrypt", payload, nonce="\U0001f600" * 32)["code"] == 200
    assert app.call("Encrypt", payload, nonce="\U0001f600" * 33) == NONCE_LENGTH
    assert app.call("Encrypt", payload, nonce=list(range(1, 66))) == NONCE_LENGTH
    # A number has no length: any number passes.
    assert app.call("Encrypt", payload, nonce=10**30)["code"] == 200


@pytest.mark.parametrize("timestamp", ["170000000000", "17000000000000", "", "1", " 1700000000000"], ids=repr)
def test_timestamp_length(keyring: Keyring, timestamp: str) -> None:
    body = keyring.app.body(_enc(keyring["aes256"]), timestamp=timestamp)
    expected = MISSING if timestamp == "" else TIMESTAMP_LENGTH
    assert keyring.app.send("Encrypt", body) == expected


def test_order_of_envelope_checks(keyring: Keyring) -> None:
    """Each check has its own message and the first failing one answers (contract 2.1)."""
    app = keyring.app
    body = app.body(_enc(keyring["aes256"]), timestamp="1", nonce="n" * 65)
    assert app.send("Encrypt", body) == NONCE_LENGTH
    assert app.send("Encrypt", {**body, "appid": 1}) == PARAM_TYPE
    assert app.send("Encrypt", {**body, "appid": 1, "sign": ""}) == MISSING


@pytest.mark.parametrize("skew_ms", [-11 * 60_000, -600_500, 600_500, 11 * 60_000, 10**12])
def test_timestamp_outside_the_window(keyring: Keyring, skew_ms: int) -> None:
    timestamp = str(now_ms() + skew_ms)
    if len(timestamp) != 13:
        timestamp = "9" * 13
    body = keyring.app.body(_enc(keyring["aes256"]), timestamp=timestamp)
    assert keyring.app.send("Encrypt", body) == TIMESTAMP_ERROR


@pytest.mark.parametrize("skew_ms", [-9 * 60_000, 9 * 60_000])
def test_timestamp_inside_the_window(keyring: Keyring, skew_ms: int) -> None:
    body = keyring.app.body(_enc(keyring["aes256"]), timestamp=str(now_ms() + skew_ms))
    assert keyring.app.send("Encrypt", body)["code"] == 200


@pytest.mark.parametrize("timestamp", ["abcdefghijklm", "17000000000.0", "0x18bcfe56800"], ids=repr)
def test_timestamp_that_is_not_a_number(keyring: Keyring, timestamp: str) -> None:
    body = keyring.app.body(_enc(keyring["aes256"]), timestamp=timestamp)
    assert keyring.app.send("Encrypt", body) == TIMESTAMP_ERROR


# ------------------------------------------------------------------------------ replay


def test_exact_resend_is_a_replay(keyring: Keyring) -> None:
    app = keyring.app
    body = app.body(_enc(keyring["aes256"]))
    assert app.send("Encrypt", body)["code"] == 200
    assert app.send("Encrypt", body) == REPLAY
    assert app.send("Encrypt", body) == REPLAY
    # The same for a request without a nonce (as the Python SDK sends), and for a failed but authenticated one.
    body = app.body({"keyid": unknown_keyid()}, nonce=ABSENT)
    assert "nonce" not in body
    assert app.send("GetPublicKey", body) == KEYID_ERROR
    assert app.send("GetPublicKey", body) == REPLAY
    bare = app.body(nonce=ABSENT)
    assert app.send("ListKey", bare)["code"] == 200
    assert app.send("ListKey", bare) == REPLAY


def test_replay_is_refused_on_both_paths(keyring: Keyring, kms: Kms) -> None:
    """``/ehsm`` and ``/ehsm/`` are one resource: a request sent to one is a replay on the other."""
    app = keyring.app
    body = app.body(_enc(keyring["aes256"]))
    assert app.send("Encrypt", body, path="/ehsm")["code"] == 200
    assert app.send("Encrypt", body, path="/ehsm/") == REPLAY


def test_unauthenticated_requests_burn_nothing(keyring: Keyring) -> None:
    app = keyring.app
    good = app.body(_enc(keyring["aes256"]))
    forged = {**good, "sign": app.body(_enc(keyring["aes256"]), apikey="F" * 32)["sign"]}
    assert app.send("Encrypt", forged) == SIGN_ERROR
    assert app.send("Encrypt", forged) == SIGN_ERROR  # never recorded
    assert app.send("Encrypt", good)["code"] == 200


def test_same_millisecond_different_requests_do_not_collide(keyring: Keyring) -> None:
    app = keyring.app
    timestamp = str(now_ms())
    a = app.body(_enc(keyring["aes256"]), timestamp=timestamp, nonce=ABSENT)
    b = app.body(_enc(keyring["aes128"]), timestamp=timestamp, nonce=ABSENT)
    assert app.send("Encrypt", a)["code"] == 200
    assert app.send("Encrypt", b)["code"] == 200
    # Same timestamp, other nonce: a new request.
    c = app.body(_enc(keyring["aes256"]), timestamp=timestamp, nonce="other")
    assert app.send("Encrypt", c)["code"] == 200


# ------------------------------------------------------------------------------ payload rules (section 3.1)

KEYID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
NOT_STRING = "must be of string type."
NOT_B64 = "not a vailed base64 string."
NOT_INT = "must be of integer type."


@pytest.mark.parametrize(
    ("action", "payload", "expected"),
    [
        # STRING (keyid: 36 characters, lower-case uuid-like)
        ("Encrypt", {"plaintext": b64(b"x")}, missing("keyid")),
        ("Encrypt", {"keyid": "", "plaintext": b64(b"x")}, missing("keyid")),
        ("Encrypt", {"keyid": 7, "plaintext": b64(b"x")}, invalid("keyid", NOT_STRING)),
        ("Encrypt", {"keyid": KEYID[:-1], "plaintext": b64(b"x")}, invalid("keyid", "length error.")),
        ("Encrypt", {"keyid": KEYID.upper(), "plaintext": b64(b"x")}, invalid("keyid", "format wrong.")),
        ("Encrypt", {"keyid": KEYID.replace("-", "_"), "plaintext": b64(b"x")}, invalid("keyid", "format wrong.")),
        ("ExportDataKey", {"keyid": KEYID, "ukeyid": 5, "olddatakey_base": "x"}, invalid("ukeyid", NOT_STRING)),
        # BASE64
        ("Encrypt", {"keyid": KEYID}, missing("plaintext")),
        ("Encrypt", {"keyid": KEYID, "plaintext": "abc"}, invalid("plaintext", NOT_B64)),
        ("Encrypt", {"keyid": KEYID, "plaintext": "ab c"}, invalid("plaintext", NOT_B64)),
        ("Encrypt", {"keyid": KEYID, "plaintext": "-_-_"}, invalid("plaintext", NOT_B64)),
        ("Encrypt", {"keyid": KEYID, "plaintext": "A" * 8196}, invalid("plaintext", "length error.")),
        ("Encrypt", {"keyid": KEYID, "plaintext": ["QQ=="]}, invalid("plaintext", NOT_STRING)),
        ("Encrypt", {"keyid": KEYID, "plaintext": "QQ==", "aad": "==QQ"}, invalid("aad", NOT_B64)),
        ("Decrypt", {"keyid": KEYID, "ciphertext": "A" * 8404}, invalid("ciphertext", "length error.")),
        ("ImportKeyMaterial", {"keyid": KEYID, "padding_mode": "EH_RSA_PKCS1"}, missing("key_material")),
        # INT
        ("GenerateDataKey", {"keyid": KEYID, "keylen": "16"}, invalid("keylen", NOT_INT)),
        ("GenerateDataKey", {"keyid": KEYID, "keylen": 1e21}, invalid("keylen", NOT_INT)),
        ("GenerateDataKey", {"keyid": KEYID, "keylen": -1},
         invalid("keylen", "value must be greater than or equal to 1.")),
        ("GenerateDataKey", {"keyid": KEYID, "keylen": 2048},
         invalid("keylen", "value must be less than or equal to 1024.")),
        # CONST
        ("AsymmetricEncrypt", {"keyid": KEYID, "plaintext": "QQ==", "padding_mode": "EH_PAD_RSA_PKCS1"},
         invalid("padding_mode", "type is incorrect.")),
        ("Sign", {"keyid": KEYID, "message": "QQ==", "message_type": "EH_RAW", "digest_mode": "EH_SHA256",
                  "padding_mode": "EH_PAD_NONE"}, invalid("digest_mode", "type is incorrect.")),
        ("Sign", {"keyid": KEYID, "message": "QQ==", "message_type": "raw", "digest_mode": "EH_SHA_256",
                  "padding_mode": "EH_PAD_NONE"}, invalid("message_type", "type is incorrect.")),
        ("GetParametersForImport", {"keyid": KEYID, "keyspec": "RSA_2048"}, invalid("keyspec", "type is incorrect.")),
        ("GetParametersForImport", {"keyid": KEYID}, missing("keyspec")),
    ],
)  # fmt: skip
def test_payload_rule_messages(app: App, action: str, payload: dict[str, Any], expected: dict[str, Any]) -> None:
    assert app.call(action, payload) == expected


def test_payload_rules_come_before_the_signature(app: App) -> None:
    """Payload validation is step 9 and the signature step 10 (contract 2.1): a bad field is reported even
    when the signature is wrong too."""
    body = app.body({"keyid": KEYID.upper(), "plaintext": b64(b"x")}, apikey="Z" * 32)
    assert app.send("Encrypt", body) == invalid("keyid", "format wrong.")


# ------------------------------------------------------------------------------ authentication


def test_unknown_appid(kms: Kms, keyring: Keyring) -> None:
    """Code and result as the original (``{"code":400,"result":{}}``); we add a message."""
    stranger = App(kms.wire, unknown_keyid(), "A" * 32)
    for action, payload in (("Encrypt", _enc(keyring["aes256"])), ("ListKey", None), ("NoSuchAction", None)):
        out = stranger.call(action, payload) if payload is not None else stranger.call(action)
        assert out["code"] == 400 and out["result"] == {}, out
        assert isinstance(out.get("message", ""), str)
        assert out.get("message") not in ("sign error", "keyid error")


def test_wrong_apikey_is_sign_error(keyring: Keyring, other_app: App) -> None:
    app = keyring.app
    assert app.call("Encrypt", _enc(keyring["aes256"]), apikey=other_app.apikey) == SIGN_ERROR
    assert app.call("ListKey", apikey=app.apikey[:-1] + ("x" if app.apikey[-1] != "x" else "y")) == SIGN_ERROR
    # The appid of one app with the signature of another's key.
    borrowed = other_app.body(_enc(keyring["aes256"]))
    assert app.send("Encrypt", {**borrowed, "appid": app.appid}) == SIGN_ERROR


def test_changed_field_after_signing_is_sign_error(keyring: Keyring) -> None:
    app = keyring.app
    body = app.body(_enc(keyring["aes256"]))
    for changed in (
        {"payload": {**body["payload"], "plaintext": b64(b"other")}},
        {"payload": {**body["payload"], "aad": b64(b"added")}},
        {"nonce": body["nonce"] + "x"},
        {"timestamp": str(int(body["timestamp"]) + 1)},
    ):
        assert app.send("Encrypt", {**body, **changed}) == SIGN_ERROR, changed
    assert app.send("Encrypt", body)["code"] == 200


# ------------------------------------------------------------------------------ keys


def test_unknown_and_foreign_keys_answer_the_same(keyring: Keyring, other_app: App) -> None:
    """No existence oracle: another app's key is "keyid error", exactly like one that never existed."""
    mine = keyring.app
    foreign = {
        "aes": other_app.create_key("EH_AES_GCM_256"),
        "sm2": other_app.create_key("EH_SM2"),
        "ec": other_app.create_key("EH_EC_P256", "SIGN_VERIFY"),
    }
    ct = other_app.ok("Encrypt", _enc(foreign["aes"]))["ciphertext"]
    sign = {"message": b64(b"m"), "message_type": "EH_RAW", "digest_mode": "EH_SHA_256", "padding_mode": "EH_PAD_NONE"}
    for keyid in (unknown_keyid(), "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"):
        probes = [("Encrypt", _enc(keyid)), ("Decrypt", {"keyid": keyid, "ciphertext": ct})]
        assert all(mine.call(a, p) == KEYID_ERROR for a, p in probes)
    calls = [
        ("Encrypt", _enc(foreign["aes"])),
        ("Decrypt", {"keyid": foreign["aes"], "ciphertext": ct}),
        ("GenerateDataKey", {"keyid": foreign["aes"], "keylen": 16}),
        ("GenerateDataKeyWithoutPlaintext", {"keyid": foreign["aes"], "keylen": 16}),
        ("GetPublicKey", {"keyid": foreign["sm2"]}),
        ("AsymmetricEncrypt", {"keyid": foreign["sm2"], "plaintext": b64(b"x"), "padding_mode": "EH_RSA_PKCS1"}),
        ("Sign", {"keyid": foreign["ec"], **sign}),
        ("Verify", {"keyid": foreign["ec"], **sign, "signature": b64(b"s")}),
        ("ExportDataKey", {"keyid": foreign["aes"], "ukeyid": keyring["rsa2048"], "olddatakey_base": ct}),
        ("ExportDataKey", {"keyid": keyring["aes256"], "ukeyid": foreign["sm2"], "olddatakey_base": ct}),
        ("GetParametersForImport", {"keyid": foreign["aes"], "keyspec": "EH_RSA_2048"}),
        ("ImportKeyMaterial", {"keyid": foreign["aes"], "padding_mode": "EH_RSA_PKCS1", "key_material": "QQ==",
                               "importToken": "QQ=="}),
    ]  # fmt: skip
    for action, payload in calls:
        assert mine.call(action, payload) == KEYID_ERROR, action
        assert mine.call(action, {**payload, "keyid": unknown_keyid()}) == KEYID_ERROR, action
    for action in ("EnableKey", "DisableKey"):
        assert mine.call(action, {"keyid": foreign["aes"]}) == NOT_FIND_KEYID
    assert other_app.call("Encrypt", _enc(foreign["aes"]))["code"] == 200


def test_disabled_key(app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256")
    app.ok("DisableKey", {"keyid": keyid})
    assert app.call("Encrypt", _enc(keyid)) == KEYID_DISABLED


@pytest.mark.parametrize(
    ("action", "name", "extra"),
    [
        ("Encrypt", "rsa2048", {"plaintext": b64(b"x")}),
        ("GenerateDataKey", "p256", {"keylen": 16}),
        ("AsymmetricEncrypt", "aes256", {"plaintext": b64(b"x"), "padding_mode": "EH_RSA_PKCS1"}),
        ("AsymmetricDecrypt", "sm4cbc", {"ciphertext": b64(b"x" * 32), "padding_mode": "EH_RSA_PKCS1"}),
        ("Sign", "rsa2048", {"message": b64(b"m"), "message_type": "EH_RAW", "digest_mode": "EH_SHA_256",
                             "padding_mode": "EH_RSA_PKCS1"}),
        ("Verify", "aes128", {"message": b64(b"m"), "message_type": "EH_RAW", "digest_mode": "EH_SHA_256",
                              "padding_mode": "EH_RSA_PKCS1", "signature": b64(b"s")}),
        ("GetPublicKey", "sm4ctr", {}),
        ("GetParametersForImport", "aes192", {"keyspec": "EH_RSA_2048"}),
        ("GenerateMac", "aes256", {"message": b64(b"m")}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
def test_server_exception_for_the_wrong_kind_of_key(
    keyring: Keyring, action: str, name: str, extra: dict[str, Any]
) -> None:
    assert keyring.app.call(action, {"keyid": keyring[name], **extra}) == SERVER_EXCEPTION


def test_decryption_failed(keyring: Keyring) -> None:
    app = keyring.app
    for name in ("aes256", "sm4ctr", "sm4cbc"):
        keyid = keyring[name]
        ct = app.ok("Encrypt", {**_enc(keyid), "aad": b64(b"a")})["ciphertext"]
        assert app.call("Decrypt", {"keyid": keyid, "ciphertext": ct, "aad": b64(b"b")}) == DECRYPTION_FAILED
        for garbage in (b64(b"\x01"), b64(b"\x00" * 40), b64(b"\x09" + b"\x00" * 60)):
            assert app.call("Decrypt", {"keyid": keyid, "ciphertext": garbage}) == DECRYPTION_FAILED


# ------------------------------------------------------------------------------ HTTP status


def test_every_error_is_http_200(kms: Kms) -> None:
    """:class:`Wire` asserts HTTP 200 on every response; here a few raw requests say it once more."""
    wire = Wire(kms.server.url)
    try:
        for method, path, content in (
            ("GET", "/", None),
            ("POST", "/ehsm/?Action=Encrypt", b"{"),
            ("POST", "/ehsm?Action=Nope", b"{}"),
            ("GET", "/ehsm?Action=ListKey", None),
            ("PUT", "/ehsm?Action=Encrypt", b"{}"),
            ("DELETE", "/ehsm/", None),
        ):
            resp = wire.http.request(method, path, content=content, headers={"content-type": "application/json"})
            assert resp.status_code == 200, (method, path, resp.status_code)
            assert resp.json()["code"] in (400, 404)
    finally:
        wire.close()
