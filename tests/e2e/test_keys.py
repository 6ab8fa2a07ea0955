"""Key management against the live server: CreateKey's whole matrix, ListKey, Delete*, Enable/Disable.

Which combinations CreateKey accepts is written out here from the contract (section 4.2) and our additions,
not read from ``ehsm_kms.core.specs``:

* AES-GCM and SM4: ENCRYPT_DECRYPT, internal or external (BYOK); SIGN_VERIFY is refused;
* RSA, EC, SM2: either usage, internal only. The original accepted external asymmetric keys that no import
  could ever fill ("accepted but useless", section 3.4); we refuse them at creation;
* EH_HMAC (ours): SIGN_VERIFY, internal or external; ENCRYPT_DECRYPT is refused.

A refused combination is ``500 "Server exception."`` with ``"result": null``, as the original's enclave said.
"""

from __future__ import annotations

import itertools
import re

import pytest

from tests.e2e import (
    API_NOT_FOUND,
    KEYID_DISABLED,
    KEYID_ERROR,
    NOT_FIND_KEYID,
    REPLAY,
    SERVER_EXCEPTION,
    App,
    b64,
    invalid,
    missing,
    success,
    unknown_keyid,
)

SYMMETRIC = ["EH_AES_GCM_128", "EH_AES_GCM_192", "EH_AES_GCM_256", "EH_SM4_CTR", "EH_SM4_CBC"]
ASYMMETRIC = [
    "EH_RSA_2048",
    "EH_RSA_3072",
    "EH_RSA_4096",
    "EH_EC_P224",
    "EH_EC_P256",
    "EH_EC_P256K",
    "EH_EC_P384",
    "EH_EC_P521",
    "EH_SM2",
]
ALL_SPECS = [*SYMMETRIC, *ASYMMETRIC, "EH_HMAC"]
USAGES = ["EH_KEYUSAGE_ENCRYPT_DECRYPT", "EH_KEYUSAGE_SIGN_VERIFY"]
ORIGINS = ["EH_INTERNAL_KEY", "EH_EXTERNAL_KEY"]
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
YEAR_MS = 365 * 86_400_000


def allowed(spec: str, usage: str, origin: str) -> bool:
    encrypt = usage == "EH_KEYUSAGE_ENCRYPT_DECRYPT"
    if spec in SYMMETRIC:
        return encrypt
    if spec == "EH_HMAC":
        return not encrypt
    return origin == "EH_INTERNAL_KEY"


MATRIX = list(itertools.product(ALL_SPECS, USAGES, ORIGINS))


def _create(app: App, spec: str, usage: str, origin: str) -> dict[str, object]:
    return app.call("CreateKey", {"keyspec": spec, "origin": origin, "keyusage": usage})


def test_create_key_matrix(app: App) -> None:
    """All 60 keyspec x usage x origin combinations; the accepted ones are listed with their spec."""
    made: dict[str, str] = {}
    for spec, usage, origin in MATRIX:
        out = _create(app, spec, usage, origin)
        if allowed(spec, usage, origin):
            assert out["code"] == 200 and out["message"] == "success!", (spec, usage, origin, out)
            assert isinstance(out["result"], dict) and set(out["result"]) == {"keyid"}
            keyid = out["result"]["keyid"]
            assert UUID4.fullmatch(keyid), keyid
            made[keyid] = spec
        else:
            assert out == SERVER_EXCEPTION, (spec, usage, origin, out)
    assert len(made) == sum(allowed(*combo) for combo in MATRIX) == 30
    listed = {k["keyid"]: k["keyspec"] for k in app.ok("ListKey")["list"]}
    assert listed == made


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"keyspec": "EH_AES_GCM_512", "origin": "EH_INTERNAL_KEY", "keyusage": USAGES[0]},
         invalid("keyspec", "type is incorrect.")),
        ({"keyspec": "eh_aes_gcm_256", "origin": "EH_INTERNAL_KEY", "keyusage": USAGES[0]},
         invalid("keyspec", "type is incorrect.")),
        ({"keyspec": "EH_AES_GCM_256", "origin": "EH_BYOK", "keyusage": USAGES[0]},
         invalid("origin", "type is incorrect.")),
        ({"origin": "EH_INTERNAL_KEY", "keyusage": USAGES[0]}, missing("keyspec")),
        ({"keyspec": "EH_AES_GCM_256", "keyusage": USAGES[0]}, missing("origin")),
        ({"keyspec": 3, "origin": "EH_INTERNAL_KEY", "keyusage": USAGES[0]}, invalid("keyspec", "type is incorrect.")),
        # Ours: keyusage is checked like the other two (the original left it to the enclave: 500).
        ({"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY"}, missing("keyusage")),
        ({"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_WRAP"},
         invalid("keyusage", "type is incorrect.")),
    ],
    ids=["bad-keyspec", "lower-case-keyspec", "bad-origin", "no-keyspec", "no-origin", "numeric-keyspec",
         "no-keyusage", "bad-keyusage"],
)  # fmt: skip
def test_create_key_payload_errors(app: App, payload: dict[str, object], expected: dict[str, object]) -> None:
    assert app.call("CreateKey", payload) == expected
    assert app.ok("ListKey") == {"list": []}


def test_list_key_shape(app: App, other_app: App) -> None:
    """Every entry has what the Python SDK's serializer requires (contract 9.1), with integer dates."""
    assert app.call("ListKey") == success({"list": []}, "successful")
    ids = [app.create_key("EH_AES_GCM_256"), app.create_key("EH_EC_P256", "SIGN_VERIFY")]
    other_app.create_key("EH_AES_GCM_128")  # never listed for `app`
    app.ok("DisableKey", {"keyid": ids[1]})
    out = app.call("ListKey")
    assert out["code"] == 200 and out["message"] == "successful"
    entries = {e["keyid"]: e for e in out["result"]["list"]}
    assert set(entries) == set(ids)
    for entry in entries.values():
        assert set(entry) == {"keyid", "alias", "keyspec", "keyState", "creationDate", "expireTime"}
        assert entry["alias"] == ""
        for name in ("keyState", "creationDate", "expireTime"):
            assert type(entry[name]) is int, (name, entry)
        assert entry["expireTime"] - entry["creationDate"] == YEAR_MS
    assert entries[ids[0]]["keyspec"] == "EH_AES_GCM_256" and entries[ids[0]]["keyState"] == 1
    assert entries[ids[1]]["keyspec"] == "EH_EC_P256" and entries[ids[1]]["keyState"] == 0


def test_enrolled_apps_start_with_no_listed_keys(app: App) -> None:
    """The app's own APIKey key is not a CMK and never appears in ListKey (contract 2.7)."""
    assert app.ok("ListKey") == {"list": []}


def _encrypt(app: App, keyid: str) -> dict[str, object]:
    return app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"state")})


def test_disable_takes_effect_on_the_very_next_request(app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256")
    assert _encrypt(app, keyid)["code"] == 200  # the node now holds the key in its cache
    assert app.call("DisableKey", {"keyid": keyid}) == success({}, "successful")
    assert _encrypt(app, keyid) == KEYID_DISABLED
    assert app.call("DisableKey", {"keyid": keyid}) == success({}, "successful")  # idempotent
    assert app.call("EnableKey", {"keyid": keyid}) == success({}, "successful")
    assert _encrypt(app, keyid)["code"] == 200
    assert app.call("EnableKey", {"keyid": keyid}) == success({}, "successful")


def test_disabled_key_is_refused_by_every_keyed_action(app: App) -> None:
    aes = app.create_key("EH_AES_GCM_256")
    sm2 = app.create_key("EH_SM2")
    ct = app.ok("Encrypt", {"keyid": aes, "plaintext": b64(b"x")})["ciphertext"]
    datakey = app.ok("GenerateDataKeyWithoutPlaintext", {"keyid": aes, "keylen": 16})["ciphertext"]
    app.ok("DisableKey", {"keyid": aes})
    app.ok("DisableKey", {"keyid": sm2})
    calls = [
        ("Decrypt", {"keyid": aes, "ciphertext": ct}),
        ("GenerateDataKey", {"keyid": aes, "keylen": 16}),
        ("GenerateDataKeyWithoutPlaintext", {"keyid": aes, "keylen": 16}),
        ("AsymmetricEncrypt", {"keyid": sm2, "plaintext": b64(b"x"), "padding_mode": "EH_PAD_NONE"}),
        ("GetPublicKey", {"keyid": sm2}),
    ]
    for action, payload in calls:
        assert app.call(action, payload) == KEYID_DISABLED, action
    app.ok("EnableKey", {"keyid": sm2})
    export = {"keyid": aes, "ukeyid": sm2, "olddatakey_base": datakey}
    assert app.call("ExportDataKey", export) == KEYID_DISABLED


def test_enable_disable_unknown_and_foreign_keys(app: App, other_app: App) -> None:
    foreign = other_app.create_key("EH_AES_GCM_256")
    for action in ("EnableKey", "DisableKey"):
        assert app.call(action, {"keyid": unknown_keyid()}) == NOT_FIND_KEYID
        assert app.call(action, {"keyid": foreign}) == NOT_FIND_KEYID
    # The foreign key was not touched.
    assert _encrypt(other_app, foreign)["code"] == 200
    assert other_app.ok("ListKey")["list"][0]["keyState"] == 1


def test_delete_key(app: App, other_app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256")
    kept = app.create_key("EH_SM4_CBC")
    assert _encrypt(app, keyid)["code"] == 200
    assert app.call("DeleteKey", {"keyid": keyid}) == success({}, "successful")
    assert _encrypt(app, keyid) == KEYID_ERROR  # at once, although the node had it cached
    assert [k["keyid"] for k in app.ok("ListKey")["list"]] == [kept]
    assert app.call("DeleteKey", {"keyid": keyid}) == success({}, "successful")  # already gone: still fine
    assert app.call("DeleteKey", {"keyid": unknown_keyid()}) == success({}, "successful")
    for action in ("EnableKey", "DisableKey"):
        assert app.call(action, {"keyid": keyid}) == NOT_FIND_KEYID


def test_delete_key_of_another_app_deletes_nothing(app: App, other_app: App) -> None:
    foreign = other_app.create_key("EH_AES_GCM_256")
    assert app.call("DeleteKey", {"keyid": foreign}) == success({}, "successful")
    assert _encrypt(other_app, foreign)["code"] == 200
    assert [k["keyid"] for k in other_app.ok("ListKey")["list"]] == [foreign]


def test_delete_key_payload_is_validated(app: App) -> None:
    """Ours: a key-management action without its payload is validated as ``{}`` (the original skipped it)."""
    for action in ("DeleteKey", "EnableKey", "DisableKey"):
        assert app.call(action) == missing("keyid")
        assert app.call(action, {"keyid": "not-a-uuid"}) == invalid("keyid", "length error.")


def test_resent_create_key_makes_no_second_key(app: App) -> None:
    body = app.body({"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": USAGES[0]})
    first = app.send("CreateKey", body)
    assert first["code"] == 200
    assert app.send("CreateKey", body) == REPLAY
    assert [k["keyid"] for k in app.ok("ListKey")["list"]] == [first["result"]["keyid"]]


def test_delete_all_key(app: App, other_app: App) -> None:
    ids = [app.create_key("EH_AES_GCM_256"), app.create_key("EH_EC_P384", "SIGN_VERIFY")]
    foreign = other_app.create_key("EH_AES_GCM_256")
    assert _encrypt(app, ids[0])["code"] == 200
    assert app.call("DeleteAllKey") == success({}, "successful")
    assert app.ok("ListKey") == {"list": []}
    assert _encrypt(app, ids[0]) == KEYID_ERROR
    assert app.call("GetPublicKey", {"keyid": ids[1]}) == KEYID_ERROR
    assert _encrypt(other_app, foreign)["code"] == 200
    assert app.call("DeleteAllKey") == success({}, "successful")  # nothing left: still fine
    # The docs' spelling is not an action.
    assert app.call("DeleteALLKey") == API_NOT_FOUND
    assert app.ok("ListKey") == {"list": []}
    assert app.create_key("EH_AES_GCM_128")  # the app itself still works
