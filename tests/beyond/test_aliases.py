"""Aliases and DescribeKey over the wire: CreateAlias, UpdateAlias, DeleteAlias, ListAliases; ``alias/<name>``
wherever a keyid goes; one alias per key, unique per app."""

from __future__ import annotations

import uuid

from tests.e2e import KEYID_DISABLED, KEYID_ERROR, App, b64, node_error

SUCCESSFUL = "successful"


def name() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}"


def test_an_alias_works_wherever_a_keyid_does(app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256")
    alias = name()
    out = app.call("CreateAlias", {"keyid": keyid, "alias": alias})
    assert out == {"code": 200, "message": SUCCESSFUL, "result": {"alias": alias, "keyid": keyid}}
    ref = f"alias/{alias}"
    ct = app.ok("Encrypt", {"keyid": ref, "plaintext": b64(b"by alias"), "aad": b64(b"a")})["ciphertext"]
    assert app.ok("Decrypt", {"keyid": keyid, "ciphertext": ct, "aad": b64(b"a")})["plaintext"] == b64(b"by alias")
    assert app.ok("Decrypt", {"keyid": ref, "ciphertext": ct, "aad": b64(b"a")})["plaintext"] == b64(b"by alias")
    datakey = app.ok("GenerateDataKeyWithoutPlaintext", {"keyid": ref, "keylen": 16})
    rsa = app.create_key("EH_SM2")
    app.ok("CreateAlias", {"keyid": rsa, "alias": "alias/" + alias + "-sm2"})  # the prefix is optional here
    exported = {"keyid": ref, "ukeyid": f"{ref}-sm2", "olddatakey_base": datakey["ciphertext"]}
    assert app.ok("ExportDataKey", exported)["newdatakey"]
    assert app.ok("ReEncrypt", {"keyid": ref, "ciphertext": ct, "aad": b64(b"a")})["keyid"] == keyid
    assert app.ok("RotateKey", {"keyid": ref}) == {"keyid": keyid, "keyversion": 2}
    listed = {k["keyid"]: k["alias"] for k in app.ok("ListKey")["list"]}
    assert listed[keyid] == alias and listed[rsa] == alias + "-sm2"
    aliases = app.ok("ListAliases")["list"]
    assert aliases == sorted([{"alias": alias, "keyid": keyid}, {"alias": alias + "-sm2", "keyid": rsa}],
                             key=lambda a: a["alias"])  # fmt: skip
    # Key management by alias too.
    assert app.call("DisableKey", {"keyid": ref}) == {"code": 200, "message": SUCCESSFUL, "result": {}}
    assert app.call("Encrypt", {"keyid": ref, "plaintext": b64(b"x")}) == KEYID_DISABLED
    app.ok("EnableKey", {"keyid": ref})
    assert app.ok("DescribeKey", {"keyid": ref})["keyid"] == keyid
    app.ok("DeleteKey", {"keyid": ref})
    assert app.call("Encrypt", {"keyid": ref, "plaintext": b64(b"x")}) == KEYID_ERROR
    assert app.ok("ListAliases")["list"] == [{"alias": alias + "-sm2", "keyid": rsa}]


def test_aliases_are_unique_per_app_and_one_per_key(app: App, other_app: App) -> None:
    first, second = app.create_key("EH_AES_GCM_128"), app.create_key("EH_AES_GCM_128")
    alias = name()
    app.ok("CreateAlias", {"keyid": first, "alias": alias})
    assert app.call("CreateAlias", {"keyid": second, "alias": alias}) == node_error(400, "alias already exists")
    assert app.call("CreateAlias", {"keyid": first, "alias": name()}) == node_error(400, "the key already has an alias")
    # Another app may use the same name for its own key, and cannot reach ours through it.
    theirs = other_app.create_key("EH_AES_GCM_128")
    other_app.ok("CreateAlias", {"keyid": theirs, "alias": alias})
    ct = app.ok("Encrypt", {"keyid": f"alias/{alias}", "plaintext": b64(b"ours")})["ciphertext"]
    assert other_app.call("Decrypt", {"keyid": f"alias/{alias}", "ciphertext": ct})["code"] == 400
    assert other_app.call("CreateAlias", {"keyid": first, "alias": name()}) == KEYID_ERROR
    assert app.call("Encrypt", {"keyid": "alias/nobody-has-this", "plaintext": b64(b"x")}) == KEYID_ERROR


def test_update_and_delete_alias(app: App) -> None:
    first, second = app.create_key("EH_AES_GCM_192"), app.create_key("EH_AES_GCM_192")
    alias = name()
    app.ok("CreateAlias", {"keyid": first, "alias": alias})
    ct = app.ok("Encrypt", {"keyid": f"alias/{alias}", "plaintext": b64(b"1")})["ciphertext"]
    assert app.ok("UpdateAlias", {"keyid": second, "alias": alias}) == {"alias": alias, "keyid": second}
    assert app.ok("DescribeKey", {"keyid": first})["alias"] == ""
    assert app.ok("DescribeKey", {"keyid": f"alias/{alias}"})["keyid"] == second
    # The old ciphertext was made by the first key: through the alias it now names the second.
    assert app.call("Decrypt", {"keyid": f"alias/{alias}", "ciphertext": ct})["code"] == 400
    assert app.ok("Decrypt", {"keyid": first, "ciphertext": ct})["plaintext"] == b64(b"1")
    missing = node_error(400, "alias not found")
    assert app.call("UpdateAlias", {"keyid": first, "alias": name()}) == missing
    assert app.ok("DeleteAlias", {"alias": f"alias/{alias}"}) == {"alias": alias}
    assert app.call("DeleteAlias", {"alias": alias}) == missing
    assert app.call("Encrypt", {"keyid": f"alias/{alias}", "plaintext": b64(b"x")}) == KEYID_ERROR
    bad = app.call("CreateAlias", {"keyid": first, "alias": "no spaces"})
    assert bad == node_error(400, "Parameter invalid, The alias format wrong.")
    assert app.call("Encrypt", {"keyid": "alias/", "plaintext": b64(b"x")}) == node_error(
        400, "Parameter invalid, The keyid length error."
    )


def test_describe_key(app: App) -> None:
    keyid = app.create_key("EH_EC_P384", "SIGN_VERIFY")
    app.ok("UpdateKeyDescription", {"keyid": keyid, "description": "release signing"})
    app.ok("CreateAlias", {"keyid": keyid, "alias": (alias := name())})
    out = app.call("DescribeKey", {"keyid": keyid})
    assert out["code"] == 200 and out["message"] == SUCCESSFUL
    described = out["result"]
    created = described.pop("creationDate")
    assert described.pop("expireTime") == created + 365 * 86_400_000
    assert described == {
        "keyid": keyid,
        "alias": alias,
        "description": "release signing",
        "keyspec": "EH_EC_P384",
        "keyusage": "EH_KEYUSAGE_SIGN_VERIFY",
        "origin": "EH_INTERNAL_KEY",
        "keyState": 1,
        "primaryVersion": 1,
        "minDecryptVersion": 1,
        "versions": [1],
        "rotationPeriod": 0,
        "nextRotationDate": 0,
        "deletionDate": 0,
    }
    # Management actions see a key in any state; a disabled or pending key is still described.
    app.ok("DisableKey", {"keyid": keyid})
    assert app.ok("DescribeKey", {"keyid": keyid})["keyState"] == 0
    scheduled = app.ok("ScheduleKeyDeletion", {"keyid": keyid, "pendingWindowInDays": 7})
    assert app.ok("DescribeKey", {"keyid": keyid})["deletionDate"] == scheduled["deletionDate"]
    assert {k["keyid"]: k["keyState"] for k in app.ok("ListKey")["list"]}[keyid] == 2
