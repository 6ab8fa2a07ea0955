"""The nine secret actions against a live server, on SQLite and PostgreSQL: payloads, results and every message
of the contract's section 6.1, byte for byte.

Where we differ from the original on purpose, the test says so:

* the CMK a secret uses must belong to the app, be enabled and be a symmetric ENCRYPT_DECRYPT key (the original
  checked none of this): "Cannot find cmk by keyid." for an unknown key or another app's, "Wrong parameter,
  please check your encryptionKeyId." for a key that cannot seal;
* ``forceDelete`` "TRUE" (any case) forces, as the check the original made already promised;
* ListSecrets and ListSecretVersionIds have no row limit, and versions are listed in order.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import REPLAY, SIGN_ERROR, App, invalid, missing, node_error, success, unknown_keyid

CREATED = "The {} create success."
PUT = "The {} new version put success."
NOT_FOUND_PUT = node_error(400, "Can not find secretName")
DELETED_PUT = node_error(400, "Can not put value for a deleted secret.")
NOT_FOUND_UPDATE = node_error(400, "Cannot find secretName")
DELETED_UPDATE = node_error(400, "Can not modify a deleted secret.")
NOT_FOUND_DELETE = node_error(400, "Delete error, Can not find the secretName")
NOT_FOUND_RESTORE = node_error(400, "Can not restore secret, the secretName not find.")
EXISTS = node_error(400, "Secret name already exists, cannot use the same secret name")
CMK_NOT_FOUND = node_error(400, "Cannot find cmk by keyid.")
WRONG_KEY = node_error(400, "Wrong parameter, please check your encryptionKeyId.")
ROTATION = node_error(400, "The rotation time is less than 6 hours or more than 8760 hours")
FORCE_FLAG = node_error(400, "The forceDelete must be true or false")
DAY = 86_400_000


def no_value(name: str) -> dict[str, Any]:
    return node_error(400, f"Can't find the {name}'s value.")


def create(app: App, name: str, data: str = "v1", **extra: Any) -> dict[str, Any]:
    return app.call("CreateSecret", {"secretName": name, "secretData": data, **extra})


def value(app: App, name: str, version: int | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"secretName": name}
    if version is not None:
        payload["versionId"] = version
    return app.call("GetSecretValue", payload)


def describe(app: App, name: str) -> dict[str, Any]:
    return app.ok("DescribeSecret", {"secretName": name})


# ---------------------------------------------------------------- CreateSecret
def test_create_and_read_with_the_default_key(app: App) -> None:
    assert create(app, "db-password", "s3cr3t", description="the database") == success(
        {}, CREATED.format("db-password")
    )
    got = value(app, "db-password")
    assert got["code"] == 200 and got["message"] == "successful"
    result = got["result"]
    assert list(result) == ["secretName", "secretData", "versionId", "createTime"]
    assert (result["secretName"], result["secretData"], result["versionId"]) == ("db-password", "s3cr3t", 1)
    assert isinstance(result["createTime"], int)
    assert describe(app, "db-password") == {
        "secretName": "db-password",
        "description": "the database",
        "createTime": result["createTime"],
    }
    # The app's default secret key is no CMK: ListKey does not show it, and no key action can name it.
    assert app.ok("ListKey")["list"] == []


@pytest.mark.parametrize("spec", ["EH_AES_GCM_128", "EH_AES_GCM_256", "EH_SM4_CTR", "EH_SM4_CBC"])
def test_create_with_a_symmetric_cmk(app: App, spec: str) -> None:
    keyid = app.create_key(spec)
    assert create(app, "k", "under a CMK", encryptionKeyId=keyid)["code"] == 200
    assert app.call("PutSecretValue", {"secretName": "k", "secretData": "two"}) == success({}, PUT.format("k"))
    assert value(app, "k")["result"]["secretData"] == "two"
    assert value(app, "k", 1)["result"]["secretData"] == "under a CMK"


def test_a_name_is_taken_pending_deletion_included(app: App, other_app: App) -> None:
    assert create(app, "db")["code"] == 200
    assert create(app, "db", "again") == EXISTS
    assert app.ok("DeleteSecret", {"secretName": "db"}) == {}
    assert create(app, "db", "again") == EXISTS
    assert create(other_app, "db", "theirs")["code"] == 200  # names are per app
    assert value(other_app, "db")["result"]["secretData"] == "theirs"
    assert app.call("RestoreSecret", {"secretName": "db"})["code"] == 200
    assert value(app, "db")["result"]["secretData"] == "v1"


def test_the_cmk_must_be_the_apps_and_able_to_seal(app: App, other_app: App) -> None:
    assert create(app, "a", encryptionKeyId=unknown_keyid()) == CMK_NOT_FOUND
    assert create(app, "a", encryptionKeyId=other_app.create_key("EH_AES_GCM_256")) == CMK_NOT_FOUND
    disabled = app.create_key("EH_AES_GCM_256")
    app.ok("DisableKey", {"keyid": disabled})
    assert create(app, "a", encryptionKeyId=disabled) == WRONG_KEY
    unusable = [
        app.create_key("EH_EC_P256"),  # asymmetric ENCRYPT_DECRYPT
        app.create_key("EH_SM2"),
        app.create_key("EH_HMAC", "SIGN_VERIFY"),
        app.create_key("EH_EC_P256", "SIGN_VERIFY"),
        app.create_key("EH_AES_GCM_256", origin="EXTERNAL"),  # BYOK, material never imported
    ]
    for keyid in unusable:
        assert create(app, "a", encryptionKeyId=keyid) == WRONG_KEY, keyid
    assert app.ok("ListSecrets", {}) == {"totalCount": 0, "secretList": []}
    assert app.ok("ListKey")["list"] != []


def test_a_key_that_stopped_working(app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256")
    assert create(app, "s", "v1", encryptionKeyId=keyid)["code"] == 200
    app.ok("DisableKey", {"keyid": keyid})
    assert app.call("PutSecretValue", {"secretName": "s", "secretData": "v2"}) == WRONG_KEY
    assert value(app, "s") == WRONG_KEY
    app.ok("EnableKey", {"keyid": keyid})
    assert value(app, "s")["result"]["secretData"] == "v1"
    app.ok("DeleteKey", {"keyid": keyid})
    assert value(app, "s") == CMK_NOT_FOUND
    assert app.call("PutSecretValue", {"secretName": "s", "secretData": "v2"}) == CMK_NOT_FOUND
    assert app.ok("ListSecretVersionIds", {"secretName": "s"})["totalCount"] == 1


@pytest.mark.parametrize(
    ("interval", "ms"),
    [("6h", 6 * 3_600_000), ("360m", 6 * 3_600_000), ("30d", 30 * DAY), ("365d", 365 * DAY), ("8760h", 365 * DAY)],
)
def test_rotation_interval_is_reported(app: App, interval: str, ms: int) -> None:
    assert create(app, "r", rotationInterval=interval)["code"] == 200
    described = describe(app, "r")
    assert list(described) == ["secretName", "createTime", "rotationInterval", "lastRotationDate", "nextRotationDate"]
    assert described["rotationInterval"] == interval and described["lastRotationDate"] == ""
    assert described["nextRotationDate"] == described["createTime"] + ms


@pytest.mark.parametrize("interval", ["5h", "359m", "9999s", "1s", "366d", "8761h", "0d", "1,"])
def test_rotation_interval_out_of_range(app: App, interval: str) -> None:
    assert create(app, "r", rotationInterval=interval) == ROTATION
    assert describe(app, "r") == {}


def test_create_payload_rules(app: App) -> None:
    assert app.call("CreateSecret", {"secretData": "x"}) == missing("secretName")
    assert app.call("CreateSecret", {"secretName": "x"}) == missing("secretData")
    assert app.call("CreateSecret", {"secretName": "", "secretData": "x"}) == missing("secretName")
    assert create(app, "n" * 65) == invalid("secretName", "length error.")
    assert create(app, "n", "d" * 4097) == invalid("secretData", "length error.")
    assert create(app, "n", description="d" * 4097) == invalid("description", "length error.")
    assert create(app, "n", encryptionKeyId="not-a-uuid") == invalid("encryptionKeyId", "length error.")
    assert create(app, "n", encryptionKeyId="X" * 36) == invalid("encryptionKeyId", "format wrong.")
    assert create(app, "n", rotationInterval="30x") == invalid("rotationInterval", "format wrong.")
    assert create(app, "n", rotationInterval="123456") == invalid("rotationInterval", "length error.")
    assert create(app, 5) == invalid("secretName", "must be of string type.")  # type: ignore[arg-type]
    assert app.ok("ListSecrets", {})["totalCount"] == 0


# ---------------------------------------------------------------- UpdateSecretDesc
def test_update_description(app: App) -> None:
    create(app, "d", description="old")
    message = "Update secret description success."
    assert app.call("UpdateSecretDesc", {"secretName": "d", "description": "new"}) == success({}, message)
    assert describe(app, "d")["description"] == "new"
    assert app.call("UpdateSecretDesc", {"secretName": "d"}) == success({}, message)  # none: removed
    assert "description" not in describe(app, "d")
    assert app.call("UpdateSecretDesc", {"secretName": "nope", "description": "x"}) == NOT_FOUND_UPDATE
    app.ok("DeleteSecret", {"secretName": "d"})
    assert app.call("UpdateSecretDesc", {"secretName": "d", "description": "x"}) == DELETED_UPDATE
    assert app.call("UpdateSecretDesc", {"description": "x"}) == missing("secretName")


# ---------------------------------------------------------------- PutSecretValue, versions
def test_versions(app: App) -> None:
    create(app, "v", "one")
    for data in ("two", "three"):
        assert app.call("PutSecretValue", {"secretName": "v", "secretData": data}) == success({}, PUT.format("v"))
    assert [value(app, "v", n)["result"]["secretData"] for n in (1, 2, 3)] == ["one", "two", "three"]
    current = value(app, "v")["result"]
    assert (current["versionId"], current["secretData"]) == (3, "three")
    listed = app.call("ListSecretVersionIds", {"secretName": "v"})
    assert listed["message"] == "List secret versionIds success."
    assert list(listed["result"]) == ["secretName", "totalCount", "versionIds"]
    assert listed["result"]["secretName"] == "v" and listed["result"]["totalCount"] == 3
    rows = listed["result"]["versionIds"]
    assert [r["versionId"] for r in rows] == [1, 2, 3]
    assert all(list(r) == ["versionId", "createTime"] and isinstance(r["createTime"], int) for r in rows)
    assert rows[2]["createTime"] == current["createTime"]
    assert value(app, "v", 4) == success({}, "successful")  # an unknown version: 200 with an empty result
    assert value(app, "v", 0) == invalid("versionId", "value must be greater than or equal to 1.")


def test_put_errors(app: App) -> None:
    assert app.call("PutSecretValue", {"secretName": "nope", "secretData": "x"}) == NOT_FOUND_PUT
    create(app, "p")
    app.ok("DeleteSecret", {"secretName": "p", "recoveryPeriod": 3})
    assert app.call("PutSecretValue", {"secretName": "p", "secretData": "x"}) == DELETED_PUT
    assert app.call("PutSecretValue", {"secretName": "p"}) == missing("secretData")
    assert app.call("PutSecretValue", {"secretName": "p", "secretData": "x" * 4097}) == invalid(
        "secretData", "length error."
    )


def test_list_versions_of_unknown_or_pending(app: App) -> None:
    empty = {"secretName": "nope", "totalCount": 0, "versionIds": []}
    assert app.ok("ListSecretVersionIds", {"secretName": "nope"}) == empty
    create(app, "p")
    app.ok("DeleteSecret", {"secretName": "p"})
    assert app.ok("ListSecretVersionIds", {"secretName": "p"}) == dict(empty, secretName="p")


# ---------------------------------------------------------------- ListSecrets, DescribeSecret
def test_list_and_describe(app: App, other_app: App) -> None:
    create(app, "a", description="first")
    create(app, "b")
    create(other_app, "theirs")
    app.ok("DeleteSecret", {"secretName": "b", "recoveryPeriod": 2})
    out = app.call("ListSecrets", {})
    assert out["message"] == "List secrets success."
    listing = out["result"]
    assert list(listing) == ["totalCount", "secretList"] and listing["totalCount"] == 2
    first, second = listing["secretList"]
    assert list(first) == ["secretName", "description", "createTime"] and first["description"] == "first"
    assert list(second) == ["secretName", "createTime", "plannedDeleteTime"] and second["secretName"] == "b"
    described = app.call("DescribeSecret", {"secretName": "b"})
    assert described["message"] == "Describe secrets success."
    assert described["result"]["plannedDeleteTime"] == second["plannedDeleteTime"]
    only = app.ok("ListSecrets", {"secretName": "a"})
    assert only == {"totalCount": 1, "secretList": [first]}
    assert app.ok("ListSecrets", {"secretName": "theirs"}) == {"totalCount": 0, "secretList": []}
    assert app.call("ListSecrets") == success({"totalCount": 2, "secretList": listing["secretList"]}, out["message"])
    assert app.call("DescribeSecret", {"secretName": "theirs"}) == success({}, "Describe secrets success.")
    assert app.call("DescribeSecret", {}) == missing("secretName")
    assert app.call("ListSecrets", {"secretName": "x" * 65}) == invalid("secretName", "length error.")


# ---------------------------------------------------------------- DeleteSecret, RestoreSecret, GetSecretValue
def test_scheduled_deletion_and_restore(app: App) -> None:
    create(app, "s")
    out = app.call("DeleteSecret", {"secretName": "s", "recoveryPeriod": 7})
    assert out == success({}, "The s will be deleted after 7 days.")  # sic: no "success"
    described = describe(app, "s")
    assert described["plannedDeleteTime"] - described["createTime"] >= 7 * DAY
    assert value(app, "s") == no_value("s")
    assert app.call("RestoreSecret", {"secretName": "s"}) == success({}, "The s restore success.")
    assert "plannedDeleteTime" not in describe(app, "s")
    assert value(app, "s")["result"]["secretData"] == "v1"
    assert app.call("RestoreSecret", {"secretName": "s"})["code"] == 200  # not pending: harmless
    out = app.call("DeleteSecret", {"secretName": "s"})
    assert out == success({}, "The s will be deleted after 30 days.")
    described = describe(app, "s")
    assert 30 * DAY <= described["plannedDeleteTime"] - described["createTime"] < 31 * DAY


@pytest.mark.parametrize(
    ("field", "flag"), [("forceDelete", "true"), ("forceDelete", "TRUE"), ("force_delete", "true")]
)
def test_force_delete(app: App, field: str, flag: str) -> None:
    create(app, "f")
    app.call("PutSecretValue", {"secretName": "f", "secretData": "v2"})
    assert app.call("DeleteSecret", {"secretName": "f", field: flag}) == success({}, "The f delete success")
    assert describe(app, "f") == {}
    assert value(app, "f") == no_value("f")
    assert app.call("RestoreSecret", {"secretName": "f"}) == NOT_FOUND_RESTORE
    assert app.call("DeleteSecret", {"secretName": "f", field: flag}) == NOT_FOUND_DELETE
    assert create(app, "f", "reborn")["code"] == 200
    reborn = value(app, "f")["result"]
    assert (reborn["secretData"], reborn["versionId"]) == ("reborn", 1)


def test_force_delete_of_a_pending_secret(app: App) -> None:
    create(app, "p")
    app.ok("DeleteSecret", {"secretName": "p"})
    assert app.call("DeleteSecret", {"secretName": "p", "forceDelete": "true"})["code"] == 200
    assert describe(app, "p") == {}


def test_delete_errors(app: App) -> None:
    create(app, "e")
    for flag in ("yes", "1", "t", "no"):
        assert app.call("DeleteSecret", {"secretName": "e", "forceDelete": flag}) == FORCE_FLAG
    assert app.call("DeleteSecret", {"secretName": "e", "forceDelete": "false"}) == success(
        {}, "The e will be deleted after 30 days."
    )
    assert app.call("DeleteSecret", {"secretName": "nope"}) == NOT_FOUND_DELETE
    assert app.call("DeleteSecret", {"secretName": "nope", "forceDelete": "true"}) == NOT_FOUND_DELETE
    assert app.call("DeleteSecret", {"secretName": "e", "recoveryPeriod": 0}) == invalid(
        "recoveryPeriod", "value must be greater than or equal to 1."
    )
    assert app.call("DeleteSecret", {"secretName": "e", "recoveryPeriod": 366}) == invalid(
        "recoveryPeriod", "value must be less than or equal to 365."
    )
    assert app.call("DeleteSecret", {"secretName": "e", "recoveryPeriod": "7"}) == invalid(
        "recoveryPeriod", "must be of integer type."
    )
    assert app.call("DeleteSecret", {"secretName": "e", "forceDelete": "falsey"}) == invalid(
        "forceDelete", "length error."
    )
    assert app.call("DeleteSecret", {"secretName": "e", "recoveryPeriod": 365})["message"] == (
        "The e will be deleted after 365 days."
    )


def test_restore_and_get_errors(app: App) -> None:
    assert app.call("RestoreSecret", {"secretName": "nope"}) == NOT_FOUND_RESTORE
    assert app.call("RestoreSecret", {}) == missing("secretName")
    assert value(app, "nope") == no_value("nope")
    assert app.call("GetSecretValue", {"secretName": "x", "versionId": "1"}) == invalid(
        "versionId", "must be of integer type."
    )


def test_secrets_belong_to_their_app(app: App, other_app: App) -> None:
    create(app, "mine", "ours")
    assert value(other_app, "mine") == no_value("mine")
    assert other_app.call("PutSecretValue", {"secretName": "mine", "secretData": "x"}) == NOT_FOUND_PUT
    assert other_app.call("DeleteSecret", {"secretName": "mine", "forceDelete": "true"}) == NOT_FOUND_DELETE
    assert other_app.call("RestoreSecret", {"secretName": "mine"}) == NOT_FOUND_RESTORE
    assert other_app.call("UpdateSecretDesc", {"secretName": "mine"}) == NOT_FOUND_UPDATE
    assert other_app.ok("DescribeSecret", {"secretName": "mine"}) == {}
    assert value(app, "mine")["result"]["secretData"] == "ours"


# ---------------------------------------------------------------- authentication and replay
def test_every_action_checks_the_signature_and_refuses_a_replay(app: App) -> None:
    create(app, "r")
    payloads = {
        "CreateSecret": {"secretName": "r2", "secretData": "x"},
        "UpdateSecretDesc": {"secretName": "r", "description": "x"},
        "PutSecretValue": {"secretName": "r", "secretData": "x"},
        "ListSecretVersionIds": {"secretName": "r"},
        "ListSecrets": {},
        "DescribeSecret": {"secretName": "r"},
        "GetSecretValue": {"secretName": "r"},
        "RestoreSecret": {"secretName": "r"},
        "DeleteSecret": {"secretName": "r2", "forceDelete": "true"},
    }
    for action, payload in payloads.items():
        assert app.send(action, app.body(payload, apikey="A" * 32)) == SIGN_ERROR, action
        body = app.body(payload)
        assert app.send(action, body)["code"] == 200, action
        assert app.send(action, body) == REPLAY, action
    # The replayed PutSecretValue wrote nothing.
    assert app.ok("ListSecretVersionIds", {"secretName": "r"})["totalCount"] == 2
