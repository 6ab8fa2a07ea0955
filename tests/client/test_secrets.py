"""The nine secret-manager actions (contract section 6) through the SDK, in all four pairings.

These fail, with a message naming the missing actions, while the server does not have them (they are not skipped).
"""

from __future__ import annotations

import pytest

from ehsm_kms import errors
from ehsm_kms.client import SecretDeleted, SecretDescription, SecretExists, SecretNotFound, SecretValue
from tests.client.harness import Kms, require_secret_actions


def test_secret_versions_and_values(kms: Kms) -> None:
    require_secret_actions()
    client = kms.client()
    client.create_secret("db-password", "v1 é", description="the database")
    described = client.describe_secret("db-password")
    assert isinstance(described, SecretDescription)
    assert described.name == "db-password" and described.description == "the database"
    assert described.create_time is not None and not described.pending_deletion
    assert described.rotation_interval is None

    got = client.get_secret_value("db-password")
    assert isinstance(got, SecretValue) and (got.data, got.version_id) == ("v1 é", 1)
    assert "v1" not in repr(got)

    client.put_secret_value("db-password", b"v2 bytes are UTF-8")
    assert client.get_secret_value("db-password").data == "v2 bytes are UTF-8"
    assert client.get_secret_value("db-password", 1).data == "v1 é"
    versions = client.list_secret_version_ids("db-password")
    assert versions.name == "db-password" and versions.total_count == 2
    assert [v.version_id for v in versions.versions] == [1, 2]

    client.update_secret_description("db-password", "changed")
    assert client.describe_secret("db-password").description == "changed"
    client.update_secret_description("db-password")  # no description removes it
    assert client.describe_secret("db-password").description is None

    with pytest.raises(SecretExists):
        client.create_secret("db-password", "again")
    with pytest.raises(ValueError, match="UTF-8"):
        client.put_secret_value("db-password", b"\xff\xfe")


def test_secret_listing_deletion_and_restore(kms: Kms) -> None:
    require_secret_actions()
    client = kms.client()
    keyid = client.create_key()
    client.create_secret("api-token", "t0k3n", encryption_key_id=keyid, rotation_interval="30d")
    client.create_secret("other", "x")
    names = {s.name for s in client.list_secrets()}
    assert names == {"api-token", "other"}
    assert [s.name for s in client.list_secrets("other")] == ["other"]
    described = client.describe_secret("api-token")
    assert described.rotation_interval == "30d" and described.next_rotation_date is not None

    client.delete_secret("api-token", recovery_period=7)
    pending = {s.name: s for s in client.list_secrets()}["api-token"]
    assert pending.pending_deletion and pending.planned_delete_time is not None
    assert client.describe_secret("api-token").pending_deletion
    with pytest.raises(errors.BadRequest):
        client.get_secret_value("api-token")
    with pytest.raises(SecretDeleted):
        client.put_secret_value("api-token", "new")
    assert client.list_secret_version_ids("api-token").total_count == 0

    client.restore_secret("api-token")
    assert client.get_secret_value("api-token").data == "t0k3n"

    client.delete_secret("api-token", force=True)
    with pytest.raises(SecretNotFound) as caught:
        client.describe_secret("api-token")
    assert caught.value.exit_code == errors.EXIT_NOT_FOUND
    with pytest.raises(SecretNotFound):
        client.delete_secret("api-token", force=True)
    with pytest.raises(SecretNotFound):
        client.restore_secret("never-was")
    with pytest.raises(SecretNotFound):
        client.get_secret_value("other", 99)
    # Secrets belong to their app.
    assert kms.client().list_secrets() == ()
