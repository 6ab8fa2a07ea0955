"""App administration: the admin credential shown once at first start, the admin actions on the server, and the
same operations with ``ehsm-kms admin`` on the node."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.beyond.conftest import ADMIN_KEY, Admin, admin_credential, as_admin, ehsm_cli, node_args, store_args
from tests.e2e import REPLAY, SIGN_ERROR, App, Wire, b64, node_error
from tests.e2e.conftest import Kms, start_kms, stop_kms
from tests.live import LiveServer

ADMIN_SIGN_ERROR = node_error(400, "admin sign error")
REVOKED = node_error(400, "app revoked")
SUCCESSFUL = "successful"


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """For what another process changed in the store: nodes cache app records for key_cache_ttl_ms (1 s)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not seen within the cache TTL"
        time.sleep(0.1)


def test_the_admin_credential_is_made_once_and_shared_by_the_nodes(admin_kms: tuple[Kms, Admin]) -> None:
    kms, admin = admin_kms
    assert kms.server.log().count("admin key:") == 1
    # A second node on the same store and domain key makes none, and accepts the same credential.
    second = LiveServer(kms.server.data_dir, kms.store_url).start()
    try:
        assert "admin key:" not in second.log()
        wire = Wire(second.url)
        try:
            listed = App(wire, admin.admin_id, admin.admin_key).call("AdminListApps", {})
            assert listed["code"] == 200
        finally:
            wire.close()
    finally:
        second.stop()
    assert ADMIN_KEY.search(kms.server.log())


def test_admin_actions_need_the_admin_credential(admin_kms: tuple[Kms, Admin]) -> None:
    kms, admin = admin_kms
    app = kms.enroll()
    boss = as_admin(kms, admin)
    out = boss.call("AdminListApps", {})
    assert out["code"] == 200 and out["message"] == SUCCESSFUL
    assert {"appid": app.appid, "state": "active"}.items() <= next(
        a for a in out["result"]["list"] if a["appid"] == app.appid
    ).items()
    # An app's own credential is not an admin's; nor is a wrong admin key, or another id with the admin key.
    assert app.call("AdminListApps", {}) == ADMIN_SIGN_ERROR
    assert boss.call("AdminListApps", {}, apikey="y" * 32) == ADMIN_SIGN_ERROR
    assert App(kms.wire, app.appid, admin.admin_key).call("AdminListApps", {}) == ADMIN_SIGN_ERROR
    # Admin requests are replay-protected like any other.
    body = boss.body({})
    assert boss.send("AdminListApps", body)["code"] == 200
    assert boss.send("AdminListApps", body) == REPLAY
    # And the admin credential is no app's: it cannot use keys.
    assert boss.call("ListKey")["code"] == 400
    assert boss.call("AdminShowApp", {"appid": "no-such-app"}) == node_error(400, "app not found")
    assert boss.call("AdminShowApp", {}) == node_error(400, "Missing required parameters, The appid cannot be empty.")
    token = boss.ok("AdminIssueEnrollToken", {"ttlHours": 2})
    assert len(token["token"]) >= 32 and token["expireTime"] > 0


def test_rotate_apikey_and_revoke_over_the_wire(admin_kms: tuple[Kms, Admin]) -> None:
    kms, admin = admin_kms
    boss = as_admin(kms, admin)
    app = kms.enroll()
    keyid = app.create_key("EH_AES_GCM_256")
    ct = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"kept")})["ciphertext"]

    made = boss.ok("AdminRotateApiKey", {"appid": app.appid})
    assert made["appid"] == app.appid and len(made["apikey"]) == 32 and made["apikey"] != app.apikey
    assert app.call("ListKey") == SIGN_ERROR  # the old APIKey stopped working
    renewed = App(kms.wire, app.appid, made["apikey"])
    assert renewed.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == b64(b"kept")

    revoked = boss.ok("AdminRevokeApp", {"appid": app.appid})
    assert revoked == {"appid": app.appid, "state": "revoked", "createdDate": revoked["createdDate"], "keys": 1}
    assert renewed.call("Decrypt", {"keyid": keyid, "ciphertext": ct}) == REVOKED
    assert renewed.call("ListKey") == REVOKED
    assert boss.ok("AdminShowApp", {"appid": app.appid})["keys"] == 1  # keys are kept
    boss.ok("AdminRestoreApp", {"appid": app.appid})
    assert renewed.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == b64(b"kept")


def _cli_ok(*args: str, env: dict[str, str] | None = None) -> str:
    out = ehsm_cli("admin", *args, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_same_operations_on_the_node(admin_kms: tuple[Kms, Admin]) -> None:
    kms, admin = admin_kms
    app = kms.enroll()
    keyid = app.create_key("EH_AES_GCM_128")
    assert app.appid in _cli_ok("list-apps", *store_args(kms))
    assert '"keys": 1' in _cli_ok("show-app", app.appid, *store_args(kms))

    env = {"BEYOND_ADMIN_KEY": admin.admin_key}
    printed = _cli_ok("rotate-apikey", app.appid, "--admin-key", "env:BEYOND_ADMIN_KEY", *node_args(kms), env=env)
    new_key = printed.split("apikey:")[1].strip()
    assert len(new_key) == 32
    eventually(lambda: app.call("ListKey") == SIGN_ERROR)
    renewed = App(kms.wire, app.appid, new_key)
    assert renewed.ok("ListKey")["list"][0]["keyid"] == keyid
    # A wrong admin key is refused by the core, and nothing changes.
    wrong = ehsm_cli("admin", "rotate-apikey", app.appid, "--admin-key", "env:BEYOND_ADMIN_KEY", *node_args(kms),
                     env={"BEYOND_ADMIN_KEY": "z" * 32})  # fmt: skip
    assert wrong.returncode != 0 and "admin sign error" in wrong.stderr
    assert renewed.call("ListKey")["code"] == 200

    assert '"state": "revoked"' in _cli_ok("revoke-app", app.appid, *store_args(kms))
    eventually(lambda: renewed.call("ListKey") == REVOKED)
    _cli_ok("restore-app", app.appid, *store_args(kms))
    eventually(lambda: renewed.call("ListKey")["code"] == 200)
    missing = ehsm_cli("admin", "show-app", "no-such-app", *store_args(kms))
    assert missing.returncode == 4 and "app not found" in missing.stderr
    # Each change made on the node is in the audit log, client "cli", with the app it changed.
    exported = _cli_ok("export-audit", *store_args(kms))
    for action in ("admin rotate-apikey", "admin revoke-app", "admin restore-app"):
        assert f'"action":"{action}"' in exported and f'"keyid":"{app.appid}"' in exported


@pytest.fixture
def own_admin(request: pytest.FixtureRequest, backend: str) -> Any:
    made = start_kms(request, backend, "beyond-admin-reset", "--enroll-mode", "open")
    try:
        yield made, admin_credential(made.server.log())
    finally:
        stop_kms(made)


def test_reset_admin_credential(own_admin: tuple[Kms, Admin]) -> None:
    kms, old = own_admin
    printed = _cli_ok("reset-admin-credential", *node_args(kms))
    new = admin_credential(printed)
    assert new.admin_id != old.admin_id
    eventually(lambda: as_admin(kms, old).call("AdminListApps", {}) == ADMIN_SIGN_ERROR)
    assert as_admin(kms, new).call("AdminListApps", {})["code"] == 200
