"""Key versions, aliases, DescribeKey and scheduled deletion (docs/beyond.md) through the SDK, in all four pairings."""

from __future__ import annotations

import pytest

from ehsm_kms import errors
from ehsm_kms.client import Alias, KeyDeletion, KeyDescription, KeyVersions, ReEncrypted
from tests.client.harness import Kms


def test_rotate_versions_and_re_encrypt(kms: Kms) -> None:
    client = kms.client()
    keyid = client.create_key("EH_AES_GCM_256", "EH_INTERNAL_KEY")
    old = client.encrypt(keyid, b"secret", aad=b"ctx")
    assert client.rotate_key(keyid) == 2
    versions = client.list_key_versions(keyid)
    assert isinstance(versions, KeyVersions) and versions.keyid == keyid
    assert (versions.primary_version, versions.min_decrypt_version) == (2, 1)
    assert [(v.version, v.primary, v.retired) for v in versions.versions] == [(1, False, False), (2, True, False)]
    assert all(v.created_at is not None for v in versions.versions)

    again = client.re_encrypt(keyid, old, aad=b"ctx")
    assert isinstance(again, ReEncrypted) and (again.keyid, again.keyversion) == (keyid, 2)
    assert client.decrypt(keyid, again.ciphertext, aad=b"ctx") == b"secret"
    other = client.create_key("EH_SM4_CBC", "EH_INTERNAL_KEY")
    moved = client.re_encrypt(keyid, old, aad=b"ctx", destination_keyid=other, destination_aad=b"new")
    assert (moved.keyid, moved.keyversion) == (other, 1)
    assert client.decrypt(other, moved.ciphertext, aad=b"new") == b"secret"
    with pytest.raises(errors.KeyNotFound):
        client.rotate_key("00000000-0000-0000-0000-000000000000")


def test_describe_key(kms: Kms) -> None:
    client = kms.client()
    keyid = client.create_key("EH_RSA_2048", "EH_INTERNAL_KEY")
    described = client.describe_key(keyid)
    assert isinstance(described, KeyDescription) and described.keyid == keyid
    assert (described.keyspec, described.keyusage, described.origin) == (
        "EH_RSA_2048",
        "EH_KEYUSAGE_ENCRYPT_DECRYPT",
        "EH_INTERNAL_KEY",
    )
    assert described.enabled and not described.pending_deletion and described.alias is None
    assert (described.versions, described.primary_version, described.rotation_period) == ((1,), 1, 0)
    assert described.created_at is not None


def test_aliases(kms: Kms) -> None:
    client = kms.client()
    first = client.create_key("EH_AES_GCM_128", "EH_INTERNAL_KEY")
    second = client.create_key("EH_AES_GCM_128", "EH_INTERNAL_KEY")
    assert client.create_alias(first, "alias/payments") == Alias("payments", first)
    assert client.list_aliases() == (Alias("payments", first),)
    assert client.describe_key(first).alias == "payments"
    ciphertext = client.encrypt("alias/payments", b"via the alias")
    assert client.decrypt(first, ciphertext) == b"via the alias"
    with pytest.raises(errors.BadRequest, match="alias already exists"):
        client.create_alias(second, "payments")

    assert client.update_alias(second, "payments") == Alias("payments", second)
    assert client.list_aliases() == (Alias("payments", second),)
    client.delete_alias("payments")
    assert client.list_aliases() == ()
    with pytest.raises(errors.BadRequest, match="alias not found"):
        client.delete_alias("payments")


def test_scheduled_deletion(kms: Kms) -> None:
    client = kms.client()
    keyid = client.create_key("EH_AES_GCM_256", "EH_INTERNAL_KEY")
    scheduled = client.schedule_key_deletion(keyid, pending_window_days=7)
    assert isinstance(scheduled, KeyDeletion) and scheduled.keyid == keyid and scheduled.deletes_at is not None
    assert client.describe_key(keyid).pending_deletion
    with pytest.raises(errors.BadRequest, match="pending deletion"):
        client.encrypt(keyid, b"x")
    with pytest.raises(errors.BadRequest, match="keyid is pending deletion"):
        client.schedule_key_deletion(keyid)

    client.cancel_key_deletion(keyid)
    assert not client.describe_key(keyid).pending_deletion
    assert client.decrypt(keyid, client.encrypt(keyid, b"back")) == b"back"
    with pytest.raises(errors.BadRequest, match="keyid is not pending deletion"):
        client.cancel_key_deletion(keyid)
