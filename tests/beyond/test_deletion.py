"""Scheduled deletion over the wire: ScheduleKeyDeletion and CancelKeyDeletion (the deletion itself, when due,
is driven with an injected clock in test_jobs.py)."""

from __future__ import annotations

from tests.e2e import KEYID_ERROR, App, b64, node_error, now_ms

DAY_MS = 86_400_000
PENDING = node_error(400, "keyid is pending deletion")


def test_a_pending_key_refuses_every_use_until_cancelled(app: App, other_app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256")
    ct = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"keep me")})["ciphertext"]
    before = now_ms()
    out = app.call("ScheduleKeyDeletion", {"keyid": keyid})
    assert out["code"] == 200 and out["message"] == "successful"
    assert out["result"]["keyState"] == 2
    assert before + 30 * DAY_MS <= out["result"]["deletionDate"] <= now_ms() + 30 * DAY_MS
    assert app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"x")}) == PENDING
    assert app.call("Decrypt", {"keyid": keyid, "ciphertext": ct}) == PENDING
    assert app.call("GenerateDataKey", {"keyid": keyid, "keylen": 16}) == PENDING
    assert app.call("RotateKey", {"keyid": keyid}) == PENDING
    assert app.call("ScheduleKeyDeletion", {"keyid": keyid}) == PENDING
    assert other_app.call("CancelKeyDeletion", {"keyid": keyid}) == KEYID_ERROR
    listed = {k["keyid"]: k["keyState"] for k in app.ok("ListKey")["list"]}
    assert listed[keyid] == 2

    assert app.ok("CancelKeyDeletion", {"keyid": keyid}) == {"keyid": keyid, "keyState": 1}
    assert app.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == b64(b"keep me")
    assert app.call("CancelKeyDeletion", {"keyid": keyid}) == node_error(400, "keyid is not pending deletion")
    assert app.ok("DescribeKey", {"keyid": keyid})["deletionDate"] == 0


def test_the_waiting_period_is_7_to_30_days(app: App) -> None:
    keyid = app.create_key("EH_SM4_CTR")
    for days, message in ((6, "greater than or equal to 7"), (31, "less than or equal to 30")):
        out = app.call("ScheduleKeyDeletion", {"keyid": keyid, "pendingWindowInDays": days})
        assert out == node_error(400, f"Parameter invalid, The pendingWindowInDays value must be {message}.")
    before = now_ms()
    made = app.ok("ScheduleKeyDeletion", {"keyid": keyid, "pendingWindowInDays": 7})
    assert before + 7 * DAY_MS <= made["deletionDate"] <= now_ms() + 7 * DAY_MS
    # DeleteKey keeps the original's meaning: at once, pending or not.
    assert app.call("DeleteKey", {"keyid": keyid}) == {"code": 200, "message": "successful", "result": {}}
    assert app.call("CancelKeyDeletion", {"keyid": keyid}) == KEYID_ERROR
