"""The rewrap's store methods on SQLite and PostgreSQL: blobs found by the DK version in their header, batches by
primary key after a cursor, counts, and compare-and-set writes that leave a row alone once it changed."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest

from ehsm_kms.storage import AppRecord, KeyRecord, KeyVersionRecord, Store, open_store
from ehsm_kms.storage.keyadmin_base import AdminCredential
from ehsm_kms.storage.rewrap_base import BLOB_KINDS

pytestmark = pytest.mark.anyio


def blob(dk_version: int, tag: bytes = b"") -> bytes:
    """Shaped like a keyblob (magic, format, DK version, nonce, ciphertext, tag); the store looks at nothing else."""
    return b"EHKB\x01" + struct.pack(">I", dk_version) + bytes(12) + tag.ljust(32, b".")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    made = open_store(store_url)
    await made.migrate()
    try:
        yield made
    finally:
        await made.close()


def _key(keyid: str, origin: str = "EH_INTERNAL_KEY") -> KeyRecord:
    return KeyRecord(keyid, "app-1", "EH_AES_GCM_256", "EH_KEYUSAGE_ENCRYPT_DECRYPT", origin, 1, 1, 2**62)


async def test_stale_blobs_batches_counts_and_compare_and_set(store: Store) -> None:
    await store.create_app(AppRecord(appid="app-1", apikey_blob=blob(1, b"apikey"), created_ms=1))
    await store.create_app(AppRecord(appid="app-2", apikey_blob=blob(2, b"apikey"), created_ms=1))
    for i in range(5):
        await store.create_key(_key(f"key-{i}"), KeyVersionRecord(f"key-{i}", 1, blob(1, b"k%d" % i), 1))
    await store.create_key(_key("key-new"), KeyVersionRecord("key-new", 1, blob(2), 1))
    # A BYOK key whose material was never imported: an empty blob, not DK-wrapped, never listed.
    await store.create_key(_key("key-ext", "EH_EXTERNAL_KEY"), KeyVersionRecord("key-ext", 1, b"", 1))
    await store.put_admin_credential(AdminCredential("admin-x", blob(1, b"admin"), 1))

    assert await store.count_stale_blobs(2) == {**dict.fromkeys(BLOB_KINDS, 0), "cmk": 5, "apikey": 1, "admin": 1}
    assert await store.count_stale_blobs(1) == {**dict.fromkeys(BLOB_KINDS, 0), "cmk": 1, "apikey": 1}

    first = await store.stale_blobs("cmk", 2, None, 2)
    assert [(b.keyid, b.version) for b in first] == [("key-0", 1), ("key-1", 1)]
    assert first[0].appid == "app-1" and first[0].keyspec == "EH_AES_GCM_256" and first[0].blob == blob(1, b"k0")
    rest = await store.stale_blobs("cmk", 2, first[-1].cursor, 10)
    assert [b.keyid for b in rest] == ["key-2", "key-3", "key-4"]
    assert await store.stale_blobs("cmk", 2, rest[-1].cursor, 10) == []

    # key-1 changes after it was read: the write of the old read leaves it alone, the others are written.
    await store.update_key_version_blob("key-1", 1, blob(1, b"changed"))
    assert await store.replace_blobs("cmk", [(first[0], blob(2, b"k0")), (first[1], blob(2, b"k1"))]) == 1
    key0, key1 = await store.get_key("key-0"), await store.get_key("key-1")
    assert key0 is not None and key0[1].blob == blob(2, b"k0")
    assert key1 is not None and key1[1].blob == blob(1, b"changed")
    assert [b.keyid for b in await store.stale_blobs("cmk", 2, None, 10)] == ["key-1", "key-2", "key-3", "key-4"]

    apikeys = await store.stale_blobs("apikey", 2, None, 10)
    assert [b.keyid for b in apikeys] == ["app-1"] and apikeys[0].appid == "app-1"
    assert await store.replace_blobs("apikey", [(apikeys[0], blob(2, b"apikey"))]) == 1
    app = await store.get_app("app-1")
    assert app is not None and app.apikey_blob == blob(2, b"apikey")
    admins = await store.stale_blobs("admin", 2, None, 10)
    await store.put_admin_credential(AdminCredential("admin-y", blob(2, b"new admin"), 2), replace=True)
    assert await store.replace_blobs("admin", [(admins[0], blob(2, b"admin"))]) == 0  # replaced meanwhile
    cred = await store.get_admin_credential()
    assert cred is not None and cred.admin_id == "admin-y" and cred.blob == blob(2, b"new admin")
    assert await store.count_stale_blobs(2) == {**dict.fromkeys(BLOB_KINDS, 0), "cmk": 4}
