"""The audit log against live servers: a record for every request (whatever its outcome) with no secret in it,
the hash chain and ``ehsm-kms admin verify-audit`` finding a removed or changed record, the JSON-lines export,
and ``audit_fail_closed``."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.beyond.conftest import Admin, database, ehsm_cli, refusing_inserts, store_args
from tests.e2e import App, b64, node_error
from tests.e2e.conftest import Kms, start_kms, stop_kms

AUDIT_DOWN = node_error(500, "audit log unavailable")


def export(kms: Kms, *extra: str) -> list[dict[str, Any]]:
    out = ehsm_cli("admin", "export-audit", *store_args(kms), *extra)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def by_request(records: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    found = [r for r in records if r["requestId"] == request_id]
    assert len(found) == 1, (request_id, found)
    return found[0]


def posted(app: App, action: str, payload: Any, **kw: Any) -> tuple[dict[str, Any], str]:
    """The answer and the request id the server gave it (the ``x-request-id`` header)."""
    resp = app.wire.request("POST", params={"Action": action}, body=app.body(payload, **kw))
    return resp.json(), resp.headers["x-request-id"]


def test_every_request_leaves_a_record_without_secrets(admin_kms: tuple[Kms, Admin]) -> None:
    kms, _ = admin_kms
    app = kms.enroll()
    keyid = app.create_key("EH_AES_GCM_256")
    secret = b"the plaintext nobody may log"
    ok, ok_id = posted(app, "Encrypt", {"keyid": keyid, "plaintext": b64(secret), "aad": b64(b"aad")})
    ciphertext = ok["result"]["ciphertext"]
    app.ok("RotateKey", {"keyid": keyid})
    dec, dec_id = posted(app, "Decrypt", {"keyid": keyid, "ciphertext": ciphertext, "aad": b64(b"aad")})
    bad, bad_id = posted(app, "Decrypt", {"keyid": keyid, "ciphertext": ciphertext, "aad": b64(b"other")})
    forged, forged_id = posted(app, "Encrypt", {"keyid": keyid, "plaintext": b64(secret)}, apikey="x" * 32)
    unknown, unknown_id = posted(app, "NoSuchAction", {})
    garbage = kms.wire.request("POST", params={"Action": "Encrypt"}, content=b"{not json")
    assert (bad["code"], forged["code"], unknown["code"]) == (400, 400, 404)

    records = export(kms)
    enc = by_request(records, ok_id)
    assert (enc["appid"], enc["action"], enc["keyid"], enc["keyversion"], enc["code"]) == (
        app.appid, "Encrypt", keyid, 1, 200
    )  # fmt: skip
    assert enc["client"].startswith("127.0.0.1:") and enc["message"] == ""
    assert by_request(records, dec_id)["keyversion"] == 1  # the version the ciphertext named, not the primary
    assert dec["code"] == 200
    failed = by_request(records, bad_id)
    assert (failed["code"], failed["message"]) == (
        400,
        "Decryption failed, Please confirm that your parameters are correct.",
    )
    assert by_request(records, forged_id)["message"] == "sign error"
    assert (by_request(records, unknown_id)["action"], by_request(records, unknown_id)["code"]) == ("NoSuchAction", 404)
    junk = by_request(records, garbage.headers["x-request-id"])
    assert (junk["appid"], junk["code"], junk["message"]) == ("-", 400, "Invalid JSON")
    enrolled = [r for r in records if r["action"] == "Enroll" and r["appid"] == app.appid]
    assert len(enrolled) == 1 and enrolled[0]["code"] == 200
    text = json.dumps(records)
    for never in (b64(secret), ciphertext, app.apikey, secret.decode()):
        assert never not in text
    # In chain order, each record naming the one before it.
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert all(r["prevHash"] == p["hash"] for p, r in itertools.pairwise(records))


@pytest.fixture
def tampered(request: pytest.FixtureRequest, backend: str) -> Iterator[Kms]:
    """A server whose audit log the test tampers with (so no other test sees a broken chain)."""
    made = start_kms(request, backend, f"beyond-audit-{request.node.name[-8:]}", "--enroll-mode", "open")
    try:
        yield made
    finally:
        stop_kms(made)


def verify(kms: Kms, *extra: str) -> tuple[int, str]:
    out = ehsm_cli("admin", "verify-audit", *store_args(kms), *extra)
    return out.returncode, out.stdout + out.stderr


def test_verify_audit_reports_where_the_chain_breaks(tampered: Kms, tmp_path: Path) -> None:
    app = tampered.enroll()
    keyid = app.create_key("EH_SM4_CBC")
    for i in range(6):
        app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"%d" % i)})
    code, text = verify(tampered)
    assert code == 0 and "audit chain intact" in text, text
    saved = tmp_path / "audit.jsonl"
    assert ehsm_cli("admin", "export-audit", *store_args(tampered), "--output", str(saved)).returncode == 0
    assert verify(tampered, "--file", str(saved))[0] == 0

    with database(tampered.store_url) as run:
        victim = run("SELECT seq FROM audit WHERE action = 'Encrypt' ORDER BY seq LIMIT 1 OFFSET 2")[0][0]
        run("DELETE FROM audit WHERE seq = ?", (victim,))
    code, text = verify(tampered)
    assert code == 1, text
    assert f"chain breaks at seq {victim}: record(s) {victim} missing" in text, text

    # A changed record (here: the result code) is found too, at that record.
    with database(tampered.store_url) as run:
        changed = victim + 2
        run("UPDATE audit SET code = 200, message = '' WHERE seq = ?", (changed - 1,))
        run("UPDATE audit SET appid = 'someone-else' WHERE seq = ?", (changed,))
    code, text = verify(tampered)
    assert f"chain breaks at seq {changed}: changed" in text, text

    # Cutting records off the end shows against the stored head; an export with a line removed shows too.
    with database(tampered.store_url) as run:
        last = run("SELECT max(seq) FROM audit")[0][0]
        run("DELETE FROM audit WHERE seq = ?", (last,))
    assert f"record(s) {last} missing at the end" in verify(tampered)[1]
    lines = saved.read_text().splitlines()
    saved.write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    code, text = verify(tampered, "--file", str(saved))
    assert code == 1 and "chain breaks at seq 4: record(s) 4 missing" in text, text


def test_fail_closed_refuses_requests_whose_record_cannot_be_written(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, admin_kms: tuple[Kms, Admin]
) -> None:
    settings = tmp_path / "fail-closed.toml"
    settings.write_text("[server]\naudit_fail_closed = true\n")
    closed = start_kms(request, backend, "beyond-fail-closed", "--enroll-mode", "open", "--config", str(settings))
    try:
        app = closed.enroll()
        keyid = app.create_key("EH_AES_GCM_256")
        ct = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"sealed")})["ciphertext"]
        with refusing_inserts(closed.store_url, "audit"):
            assert app.call("Decrypt", {"keyid": keyid, "ciphertext": ct}) == AUDIT_DOWN  # no plaintext
            assert app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"x")}) == AUDIT_DOWN
            assert closed.wire.get("GetVersion") == AUDIT_DOWN
            assert closed.wire.get("Enroll") == AUDIT_DOWN
        assert app.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == b64(b"sealed")
        assert "audit record of request" in closed.server.log()
    finally:
        stop_kms(closed)
    # Without the setting (the default) the same refusal is logged and the request still answered.
    kms, _ = admin_kms
    app = kms.enroll()
    keyid = app.create_key("EH_AES_GCM_256")
    with refusing_inserts(kms.store_url, "audit"):
        assert app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"open")})["ciphertext"]
