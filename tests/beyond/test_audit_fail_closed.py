"""``audit_fail_closed`` for real: the request record written before a state-changing action runs (refused, and
nothing done, when it cannot be written), the outcome record after (the answer withheld when that fails), both in
one chain that ``verify-audit`` checks, a request without its outcome reported apart from the breaks. The store
refuses the writes with a trigger on the audit table (SQLite ``RAISE(ABORT)``, a PL/pgSQL function raising).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ehsm_kms.service import audit, audit_chain
from ehsm_kms.storage.audit_base import GENESIS, REQUEST_CODE, AuditEvent, chain, verify
from ehsm_kms.wire.actions import ACTIONS
from tests.beyond.conftest import (
    Admin,
    admin_credential,
    as_admin,
    database,
    ehsm_cli,
    refusing_inserts,
    store_args,
)
from tests.beyond.test_audit import AUDIT_DOWN, export, posted
from tests.e2e import App, b64
from tests.e2e.conftest import Kms, start_kms, stop_kms

NEW_KEY = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}


# ------------------------------------------------------------------------------------------ the chain, offline
def _events(*rows: tuple[str, str, int]) -> list[AuditEvent]:
    """(request id, action, code) rows as events (code 0: a request record)."""
    return [
        AuditEvent(1000 + i, "app-1", action, "key-1", 0, code, "", rid, "127.0.0.1:1")
        for i, (rid, action, code) in enumerate(rows)
    ]


def test_a_request_record_pairs_with_its_outcome_and_a_lone_one_is_reported_not_broken() -> None:
    records = chain(0, GENESIS, _events(
        ("r1", "CreateKey", REQUEST_CODE), ("r1", "CreateKey", 200),
        ("r2", "Encrypt", 200),
        ("r3", "RotateKey", REQUEST_CODE),  # the node stopped here
        ("r4", "DeleteKey", REQUEST_CODE), ("r4", "DeleteKey", 400),
    ))  # fmt: skip
    report = verify(records, (records[-1].seq, records[-1].hash))
    assert report.intact and report.records == 6 and report.requests == 3
    assert [(d.seq, d.request_id, d.action) for d in report.dangling] == [(4, "r3", "RotateKey")]
    lines = audit_chain.dangling_lines(report)
    assert lines[0].startswith("1 request record(s) without an outcome record")
    assert lines[1] == "  seq 4: request r3 RotateKey by appid app-1 keyid key-1"

    # The same request id written ahead twice before an outcome: the first has none.
    again = chain(0, GENESIS, _events(("r1", "CreateKey", 0), ("r1", "CreateKey", 0), ("r1", "CreateKey", 200)))
    assert [d.seq for d in verify(again).dangling] == [1]


def test_a_removed_request_record_is_a_break_not_a_dangling_request() -> None:
    records = chain(0, GENESIS, _events(("r1", "CreateKey", 0), ("r1", "CreateKey", 200), ("r2", "Encrypt", 200)))
    report = verify([records[0], records[2]], (records[-1].seq, records[-1].hash))
    assert [str(b) for b in report.breaks] == ["seq 2: record(s) 2 missing"]
    assert report.dangling[0].seq == 1  # its outcome went with the removed record
    report = verify(records[1:], (records[-1].seq, records[-1].hash))
    assert [str(b) for b in report.breaks] == ["seq 1: record(s) 1 missing"] and report.dangling == []


def test_which_actions_are_written_ahead() -> None:
    """The rule: every action but those whose only effect is their answer; the list names only real actions."""
    assert set(ACTIONS) >= audit.NO_LASTING_EFFECT, audit.NO_LASTING_EFFECT - set(ACTIONS)
    changing = {name for name in ACTIONS if audit.writes_ahead(name)}
    assert {
        "Enroll", "CreateKey", "ImportKeyMaterial", "GetParametersForImport", "DeleteKey", "DeleteAllKey",
        "EnableKey", "DisableKey", "RotateKey", "SetMinDecryptVersion", "CreateAlias", "ScheduleKeyDeletion",
        "CreateSecret", "PutSecretValue", "DeleteSecret", "UploadQuotePolicy", "AdminRevokeApp", "AdminRotateApiKey",
        "AdminIssueEnrollToken",
    } <= changing  # fmt: skip
    assert not {"Encrypt", "Decrypt", "Sign", "GenerateDataKey", "ListKey", "GetSecretValue"} & changing
    assert audit.writes_ahead("SomeActionAddedLater")


# ------------------------------------------------------------------------------------------ live servers
@contextlib.contextmanager
def refusing_outcomes(url: str) -> Iterator[None]:
    """A trigger refusing every audit record but request records (code 0): the outcome write fails, for real."""
    with database(url) as run:
        if url.startswith("sqlite:///"):
            run("CREATE TRIGGER refuse_outcomes BEFORE INSERT ON audit WHEN NEW.code <> 0 "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END")  # fmt: skip
        else:
            run("CREATE OR REPLACE FUNCTION refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'outcome refused by the test'; END $$")  # fmt: skip
            run("CREATE TRIGGER refuse_outcomes BEFORE INSERT ON audit FOR EACH ROW WHEN (NEW.code <> 0) "
                "EXECUTE FUNCTION refuse_outcome()")  # fmt: skip
        try:
            yield
        finally:
            run("DROP TRIGGER refuse_outcomes" + ("" if url.startswith("sqlite:///") else " ON audit"))


def _fail_closed(request: pytest.FixtureRequest, backend: str, directory: Path, name: str) -> Kms:
    settings = directory / "fail-closed.toml"
    settings.write_text("[server]\naudit_fail_closed = true\n")
    return start_kms(request, backend, name, "--enroll-mode", "open", "--config", str(settings))


@pytest.fixture(scope="module")
def closed(request: pytest.FixtureRequest, backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kms]:
    made = _fail_closed(request, backend, tmp_path_factory.mktemp("closed"), "beyond-write-ahead")
    try:
        yield made
    finally:
        stop_kms(made)


class Counts:
    """What an app has in the store, read directly from the database (not through the service)."""

    def __init__(self, kms: Kms, app: App) -> None:
        self.url, self.appid = kms.store_url, app.appid

    def __call__(self) -> dict[str, int]:
        with database(self.url) as run:
            one = lambda sql: int(run(sql, (self.appid,))[0][0])  # noqa: E731
            return {
                "keys": one("SELECT count(*) FROM keys WHERE appid = ?"),
                "versions": one(
                    "SELECT count(*) FROM key_versions v JOIN keys k ON k.keyid = v.keyid WHERE k.appid = ?"
                ),
                "secret versions": one(
                    "SELECT count(*) FROM secret_versions v JOIN secrets s ON s.secret_id = v.secret_id "
                    "WHERE s.appid = ?"
                ),
                "apps": int(run("SELECT count(*) FROM apps")[0][0]),
            }


def verify_cli(kms: Kms, *extra: str) -> tuple[int, str]:
    out = ehsm_cli("admin", "verify-audit", *store_args(kms), *extra)
    return out.returncode, out.stdout + out.stderr


def test_refused_request_record_means_nothing_happened(closed: Kms) -> None:
    app = closed.enroll()
    keyid = app.create_key("EH_AES_GCM_256")
    app.ok("CreateSecret", {"secretName": "db-password", "secretData": "first value"})
    counts = Counts(closed, app)
    before = counts()
    listed = len(app.ok("ListKey")["list"])
    secret = "the second value nobody may see"
    refused = [
        ("CreateKey", NEW_KEY),
        ("PutSecretValue", {"secretName": "db-password", "secretData": secret}),
        ("RotateKey", {"keyid": keyid}),
        ("DeleteKey", {"keyid": keyid}),
        ("Encrypt", {"keyid": keyid, "plaintext": b64(b"no ciphertext")}),
    ]
    with refusing_inserts(closed.store_url, "audit"):
        for action, payload in refused:
            assert app.call(action, payload) == AUDIT_DOWN, action
            assert counts() == before, action  # checked after each: nothing done, not merely a net zero
        assert closed.wire.get("Enroll") == AUDIT_DOWN
        admin = as_admin(closed, admin_credential(closed.server.log()))
        assert admin.call("AdminRevokeApp", {"appid": app.appid}) == AUDIT_DOWN
    assert counts() == before
    assert len(app.ok("ListKey")["list"]) == listed
    assert app.ok("GetSecretValue", {"secretName": "db-password"})["secretData"] == "first value"
    assert app.ok("DescribeKey", {"keyid": keyid})["primaryVersion"] == 1  # neither rotated nor deleted
    assert app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"still an active app")})["ciphertext"]  # not revoked
    log = closed.server.log()
    assert "not written before it ran; refused" in log
    assert secret not in log and app.apikey not in log


def test_a_failed_outcome_record_withholds_the_answer_and_leaves_the_request_record(closed: Kms) -> None:
    app = closed.enroll()
    keyid = app.create_key("EH_AES_GCM_256")
    counts = Counts(closed, app)
    before = counts()
    with refusing_outcomes(closed.store_url):
        made, made_id = posted(app, "CreateKey", NEW_KEY)
        enc, enc_id = posted(app, "Encrypt", {"keyid": keyid, "plaintext": b64(b"withheld")})
    assert made == AUDIT_DOWN and enc == AUDIT_DOWN  # no key id, no ciphertext
    # The key was made (the action ran after its request record): the log says it was asked for.
    assert counts()["keys"] == before["keys"] + 1
    records = export(closed)
    [ahead] = [r for r in records if r["requestId"] == made_id]
    assert (ahead["code"], ahead["action"], ahead["appid"], ahead["message"]) == (0, "CreateKey", app.appid, "")
    assert not [r for r in records if r["requestId"] == enc_id]  # Encrypt: no request record, and no outcome
    code, text = verify_cli(closed)
    assert code == 0 and "audit chain intact" in text, text
    assert "request record(s) without an outcome record" in text, text
    assert f"seq {ahead['seq']}: request {made_id} CreateKey by appid {app.appid}" in text, text


def test_request_and_outcome_records_in_one_chain(closed: Kms, tmp_path: Path) -> None:
    app = closed.enroll()
    made, made_id = posted(app, "CreateKey", NEW_KEY)
    keyid = made["result"]["keyid"]
    rotated, rotated_id = posted(app, "RotateKey", {"keyid": keyid})
    secret = b"plaintext of an encrypt"
    enc, enc_id = posted(app, "Encrypt", {"keyid": keyid, "plaintext": b64(secret)})
    assert made["code"] == rotated["code"] == enc["code"] == 200

    records = export(closed)
    create = [r for r in records if r["requestId"] == made_id]
    assert [(r["code"], r["keyid"]) for r in create] == [(0, ""), (200, keyid)]  # named nothing; made keyid
    assert create[0]["seq"] < create[1]["seq"]
    rotate = [r for r in records if r["requestId"] == rotated_id]
    assert [(r["code"], r["keyid"]) for r in rotate] == [(0, keyid), (200, keyid)]  # the request names its key
    assert [r["code"] for r in records if r["requestId"] == enc_id] == [200]  # read-only: one record
    text = json.dumps(records)
    assert b64(secret) not in text and enc["result"]["ciphertext"] not in text and app.apikey not in text

    code, out = verify_cli(closed)
    assert code == 0 and "audit chain intact" in out, out
    assert made_id not in out and rotated_id not in out  # paired: not reported
    # An export with the rotation's request record removed breaks where it was.
    saved = tmp_path / "audit.jsonl"
    assert ehsm_cli("admin", "export-audit", *store_args(closed), "--output", str(saved)).returncode == 0
    kept = [line for line in saved.read_text().splitlines() if json.loads(line)["seq"] != rotate[0]["seq"]]
    saved.write_text("\n".join(kept) + "\n")
    code, out = verify_cli(closed, "--file", str(saved))
    assert code == 1, out
    assert f"chain breaks at seq {rotate[0]['seq']}: record(s) {rotate[0]['seq']} missing" in out, out


@pytest.fixture
def closed_alone(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Kms]:
    """A fail-closed server whose audit table the test tampers with (no other test sees the broken chain)."""
    made = _fail_closed(request, backend, tmp_path, f"beyond-wa-tamper-{request.node.name[-8:]}")
    try:
        yield made
    finally:
        stop_kms(made)


def test_a_request_record_removed_from_the_store_breaks_the_chain(closed_alone: Kms) -> None:
    app = closed_alone.enroll()
    for _ in range(3):
        app.create_key("EH_AES_GCM_256")
    assert verify_cli(closed_alone)[0] == 0
    with database(closed_alone.store_url) as run:
        ahead = run("SELECT seq FROM audit WHERE action = 'CreateKey' AND code = 0 ORDER BY seq")
        assert len(ahead) == 3
        victim = ahead[1][0]
        run("DELETE FROM audit WHERE seq = ?", (victim,))
    code, text = verify_cli(closed_alone)
    assert code == 1, text
    assert f"chain breaks at seq {victim}: record(s) {victim} missing" in text, text
    assert "without an outcome" not in text  # the removed record's outcome has no partner: not a dangling request


def test_fail_open_a_refusing_store_does_not_stop_requests(admin_kms: tuple[Kms, Admin]) -> None:
    kms, _ = admin_kms
    app = kms.enroll()
    keyid = app.create_key("EH_AES_GCM_256")
    app.ok("CreateSecret", {"secretName": "open", "secretData": "v1"})
    counts = Counts(kms, app)
    before = counts()
    secret, plaintext = "fail-open secret value", b"fail-open plaintext"
    with refusing_inserts(kms.store_url, "audit"):
        made = app.ok("CreateKey", NEW_KEY)
        app.ok("PutSecretValue", {"secretName": "open", "secretData": secret})
        ct = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(plaintext)})["ciphertext"]
    after = counts()
    assert (after["keys"], after["secret versions"]) == (before["keys"] + 1, before["secret versions"] + 1)
    assert made["keyid"] and app.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == b64(plaintext)
    log = kms.server.log()
    assert "audit record of request" in log and "not written" in log
    for never in (secret, b64(plaintext), ct, app.apikey):
        assert never not in log
    # One record per request when fail-closed is off: no request records at all.
    assert not [r for r in export(kms) if r["code"] == REQUEST_CODE]
