"""The enrollment gate (ours; the original's Enroll was open to anyone, contract 12.1.4).

``--enroll-mode token``: Enroll needs a one-time token made by ``ehsm-kms admin issue-enroll-token`` against
the node's store, passed as ``GET /ehsm?Action=Enroll&token=<t>``; each token enrolls exactly one app.
``--enroll-mode closed``: Enroll is always refused. GetVersion stays open in every mode.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e import App, b64, node_error
from tests.e2e.conftest import Kms, run_cli, start_kms, stop_kms

NEEDS_TOKEN = node_error(400, "enrollment needs a valid one-time enrollment token")
CLOSED = node_error(400, "enrollment is closed on this server")


@pytest.fixture(scope="module")
def token_kms(request: pytest.FixtureRequest, backend: str) -> Iterator[Kms]:
    made = start_kms(request, backend, "token", "--enroll-mode", "token")
    try:
        yield made
    finally:
        stop_kms(made)


@pytest.fixture(scope="module")
def closed_kms(request: pytest.FixtureRequest, backend: str) -> Iterator[Kms]:
    made = start_kms(request, backend, "closed", "--enroll-mode", "closed")
    try:
        yield made
    finally:
        stop_kms(made)


def issue_token(kms: Kms) -> str:
    """``ehsm-kms admin issue-enroll-token``, run as an operator runs it, against the node's store."""
    done = run_cli("admin", "issue-enroll-token", "--data-dir", str(kms.server.data_dir), "--store-url", kms.store_url)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) >= 20, done.stdout
    return lines[0]


def test_token_mode_refuses_enroll_without_a_valid_token(token_kms: Kms) -> None:
    wire = token_kms.wire
    assert wire.get("Enroll") == NEEDS_TOKEN
    assert wire.get("Enroll", path="/ehsm/") == NEEDS_TOKEN
    assert wire.get("Enroll", token="") == NEEDS_TOKEN
    assert wire.get("Enroll", token="not-a-token") == NEEDS_TOKEN
    assert wire.get("GetVersion")["code"] == 200


def test_token_mode_accepts_an_issued_token_exactly_once(token_kms: Kms) -> None:
    wire = token_kms.wire
    token = issue_token(token_kms)
    out = wire.get("Enroll", token=token)
    assert out["code"] == 200 and out["message"] == "successful", out
    assert list(out["result"]) == ["apikey", "appid"]
    app = App(wire, out["result"]["appid"], out["result"]["apikey"])
    keyid = app.create_key("EH_AES_GCM_256")
    assert app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"enrolled")})["ciphertext"]
    # Used up: the same token enrolls nobody else, on either path.
    assert wire.get("Enroll", token=token) == NEEDS_TOKEN
    assert wire.get("Enroll", path="/ehsm/", token=token) == NEEDS_TOKEN


def test_each_token_enrolls_one_app(token_kms: Kms) -> None:
    wire = token_kms.wire
    first, second = issue_token(token_kms), issue_token(token_kms)
    assert first != second
    b = wire.get("Enroll", path="/ehsm/", token=second)
    a = wire.get("Enroll", token=first)
    assert a["code"] == b["code"] == 200, (a, b)
    assert a["result"]["appid"] != b["result"]["appid"]
    assert wire.get("Enroll", token=first) == NEEDS_TOKEN
    assert wire.get("Enroll", token=second) == NEEDS_TOKEN


def test_closed_mode_refuses_always(closed_kms: Kms) -> None:
    wire = closed_kms.wire
    assert wire.get("Enroll") == CLOSED
    assert wire.get("Enroll", path="/ehsm/") == CLOSED
    assert wire.get("Enroll", token="anything") == CLOSED
    assert wire.get("Enroll", token=issue_token(closed_kms)) == CLOSED
    assert wire.get("GetVersion")["code"] == 200
