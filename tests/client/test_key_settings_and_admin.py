"""SetMinDecryptVersion, UpdateKeyRotation, UpdateKeyDescription, the Admin* actions (``AdminClient``) and
AttestNode's refusals, through the SDK in all four pairings (sync and async, live socket and in-process), and once
on a live server with a PostgreSQL store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ehsm_kms import errors
from ehsm_kms.client import AdminClient, AppInfo, AttestationRefused, Client, EnrollToken, NewApiKey, RotationSchedule
from ehsm_kms.provisioning.attest.errors import NoTee
from tests.client.harness import Kms, admin_from_log
from tests.live import LiveServer
from tests.pg import PG_DSN

DAY_MS = 86_400_000
TPM_POLICY = "kind = 'tpm2'\ntrusted_ak = '000b" + "00" * 32 + "'\n[pcrs.sha256]\n0 = '" + "00" * 32 + "'\n"


def check_key_settings(client: Any) -> None:
    keyid = client.create_key()
    first = client.encrypt(keyid, b"version one")
    client.rotate_key(keyid)
    client.rotate_key(keyid)
    assert client.set_min_decrypt_version(keyid, 2) == 2
    assert client.describe_key(keyid).min_decrypt_version == 2
    with pytest.raises(errors.KeyVersionRetired):
        client.decrypt(keyid, first)
    assert client.set_min_decrypt_version(keyid, 1) == 1  # lowered again: version 1 decrypts again
    assert client.decrypt(keyid, first) == b"version one"
    with pytest.raises(errors.KeyVersionInvalid, match="must not be above the key's primary version"):
        client.set_min_decrypt_version(keyid, 4)

    before = int(time.time() * 1000)
    schedule = client.update_key_rotation(keyid, 30)
    assert isinstance(schedule, RotationSchedule) and (schedule.keyid, schedule.rotation_period) == (keyid, 30)
    assert schedule.next_rotation_date is not None and schedule.next_rotation_date >= before + 30 * DAY_MS - 60_000
    assert schedule.next_rotation_at is not None
    assert client.describe_key(keyid).rotation_period == 30
    off = client.update_key_rotation(keyid, 0)
    assert (off.rotation_period, off.next_rotation_date) == (0, None)
    assert client.describe_key(keyid).rotation_period == 0

    external = client.create_key("EH_AES_GCM_256", "EH_EXTERNAL_KEY")
    with pytest.raises(errors.KeyRotationRefused):
        client.update_key_rotation(external, 7)

    assert client.update_key_description(keyid, "payments, EU") is None
    assert client.describe_key(keyid).description == "payments, EU"
    client.update_key_description(keyid)
    assert client.describe_key(keyid).description is None
    with pytest.raises(errors.KeyNotFound):
        client.update_key_description("00000000-0000-0000-0000-000000000000", "x")


def check_admin(admin: Any, app: Any, new_client: Any) -> None:
    listed = admin.list_apps()
    assert all(isinstance(a, AppInfo) for a in listed)
    mine = next(a for a in listed if a.appid == app.appid)
    assert mine.active and mine.created_at is not None and mine.keys is None
    app.create_key()
    shown = admin.show_app(app.appid)
    assert (shown.appid, shown.state, shown.keys) == (app.appid, "active", 1)

    revoked = admin.revoke_app(app.appid)
    assert (revoked.state, revoked.active) == ("revoked", False)
    with pytest.raises(errors.AppRevoked):
        app.list_keys()
    assert admin.restore_app(app.appid).active
    assert len(app.list_keys()) == 1

    rotated = admin.rotate_apikey(app.appid)
    assert isinstance(rotated, NewApiKey) and rotated.appid == app.appid and len(rotated.apikey) == 32
    assert rotated.apikey not in repr(rotated)
    with pytest.raises(errors.SignError):
        app.list_keys()  # the old APIKey no longer works
    assert len(new_client(app.appid, rotated.apikey).list_keys()) == 1

    token = admin.issue_enroll_token(2)
    assert isinstance(token, EnrollToken) and len(token.token) >= 32 and token.token not in repr(token)
    assert token.expire_time is not None and token.expire_time > int(time.time() * 1000) + 3_600_000
    with pytest.raises(errors.AppNotFound):
        admin.show_app("no-such-app")


def test_key_settings(kms: Kms) -> None:
    check_key_settings(kms.client())


def test_admin_actions(kms: Kms) -> None:
    check_admin(kms.admin(), kms.client(), lambda appid, apikey: kms.client(enroll=False, appid=appid, apikey=apikey))


def test_admin_actions_need_the_admin_credential(kms: Kms) -> None:
    app = kms.client()
    ident = kms.admin().appid
    with pytest.raises(errors.AdminAuthError, match="admin sign error"):
        kms.admin(admin_id=ident, admin_key="y" * 32).list_apps()
    with pytest.raises(errors.AdminAuthError):
        kms.admin(admin_id=app.appid, admin_key=app._apikey).list_apps()
    # The admin credential is no app's.
    with pytest.raises(errors.EhsmError):
        kms.client(enroll=False, appid=ident, apikey="y" * 32).list_keys()


def test_attest_node_on_a_node_that_cannot_attest(kms: Kms) -> None:
    anonymous = kms.client(enroll=False)
    with pytest.raises(NoTee, match="This node has no TEE"):
        anonymous.attest_node(b"n" * 32)
    with pytest.raises(errors.PayloadError, match="nonce"):
        anonymous.attest_node(b"short")
    # Attested enrollment over plain HTTP is refused before anything is sent; the client gets no credentials.
    with pytest.raises(AttestationRefused, match="needs https://"):
        anonymous.enroll(attest=TPM_POLICY)
    assert not anonymous.has_credentials


def test_admin_client_reads_only_the_admin_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHSM_KMS_APPID", "an-app")
    monkeypatch.setenv("EHSM_KMS_APIKEY", "k" * 32)
    monkeypatch.delenv("EHSM_KMS_ADMIN_ID", raising=False)
    monkeypatch.delenv("EHSM_KMS_ADMIN_KEY", raising=False)
    with AdminClient("http://127.0.0.1:9") as client:
        assert client.appid is None and not client.has_credentials
    monkeypatch.setenv("EHSM_KMS_ADMIN_ID", "admin-x")
    monkeypatch.setenv("EHSM_KMS_ADMIN_KEY", "a" * 32)
    with AdminClient("http://127.0.0.1:9") as client:
        assert client.appid == "admin-x" and client.has_credentials
        assert ("a" * 32) not in repr(client)


# ---------------------------------------------------------------- PostgreSQL
@pytest.fixture
def pg_server(pg_schema: str, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "data", f"{PG_DSN}?schema={pg_schema}", extra=["--enroll-mode", "open"]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.postgres
def test_key_settings_and_admin_on_postgres(pg_server: LiveServer) -> None:
    url = pg_server.url
    with Client(url) as client:
        client.enroll()
        check_key_settings(client)
    ident, key = admin_from_log(pg_server.log())
    with AdminClient(url, ident, key) as admin, Client(url) as app:
        app.enroll()
        made: list[Client] = []

        def new_client(appid: str, apikey: str) -> Client:
            made.append(Client(url, appid, apikey))
            return made[-1]

        try:
            check_admin(admin, app, new_client)
        finally:
            for c in made:
                c.close()
