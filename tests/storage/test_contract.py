"""The Store contract: every backend passes exactly these tests (the ``store`` fixture is parametrized)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import pytest

from ehsm_kms import errors
from ehsm_kms.storage import (
    AppRecord,
    ImportRecord,
    RecordExists,
    ReplayDetected,
    ReplayEntry,
    Store,
    open_store,
)
from ehsm_kms.storage.base import wall_clock_ms
from tests.pg import PG_DSN
from tests.storage.conftest import entry, make_key

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------- life cycle
async def test_migrate_twice_is_harmless(store: Store) -> None:
    await store.migrate()
    await store.migrate()
    await store.create_app(AppRecord("app-a", b"sealed", 1))
    assert await store.get_app("app-a") == AppRecord("app-a", b"sealed", 1)


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_a_closed_store_is_unavailable(store: Store) -> None:
    await store.close()
    with pytest.raises(errors.StoreUnavailable):
        await store.get_app("app-a")
    with pytest.raises(errors.StoreUnavailable):
        await store.create_key(*make_key())
    with pytest.raises(errors.StoreUnavailable):
        await store.record_request(entry(), wall_clock_ms())
    await store.close()  # twice is fine


async def test_a_store_closed_before_use_is_unavailable(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path / 'kms.db'}", f"{PG_DSN}?schema=ehsm_never_created"):
        unused = open_store(url)
        await unused.close()
        with pytest.raises(errors.StoreUnavailable):
            await unused.ping()


# ---------------------------------------------------------------- apps
async def test_apps(store: Store) -> None:
    await store.create_app(AppRecord("app-b", b"blob-b", 20))
    await store.create_app(AppRecord("app-a", b"blob-a", 10))
    assert await store.get_app("app-a") == AppRecord("app-a", b"blob-a", 10, "active")
    assert await store.get_app("nobody") is None
    assert [app.appid for app in await store.list_apps()] == ["app-a", "app-b"]

    assert await store.update_app("app-a", state="revoked")
    assert await store.update_app("app-a", apikey_blob=b"rotated")
    assert await store.get_app("app-a") == AppRecord("app-a", b"rotated", 10, "revoked")
    assert await store.update_app("app-a")  # nothing to change, but the app exists
    assert not await store.update_app("nobody", state="revoked")
    assert await store.get_app("app-b") == AppRecord("app-b", b"blob-b", 20, "active")


async def test_an_app_is_created_once(store: Store) -> None:
    await store.create_app(AppRecord("app-a", b"first", 1))
    with pytest.raises(RecordExists):
        await store.create_app(AppRecord("app-a", b"second", 2))
    app = await store.get_app("app-a")
    assert app is not None and app.apikey_blob == b"first"


# ---------------------------------------------------------------- keys
async def test_create_and_get_key(store: Store) -> None:
    key, version = make_key(blob=b"\x00wrapped\xff")
    key = dataclasses.replace(key, alias="alias", description="what it is for")
    await store.create_key(key, version)
    assert await store.get_key(key.keyid) == (key, version)
    assert await store.get_key_version(key.keyid, 1) == version
    assert await store.get_key_version(key.keyid, 2) is None
    assert await store.get_key(str(uuid.uuid4())) is None


async def test_a_key_is_created_once(store: Store) -> None:
    key, version = make_key()
    await store.create_key(key, version)
    other, other_version = make_key("app-b", keyid=key.keyid, blob=b"other")
    with pytest.raises(RecordExists):
        await store.create_key(other, other_version)
    assert await store.get_key(key.keyid) == (key, version)


async def test_create_key_needs_its_primary_version(store: Store) -> None:
    key, version = make_key()
    with pytest.raises(ValueError, match="primary version"):
        await store.create_key(key, dataclasses.replace(version, version=2))
    with pytest.raises(ValueError, match="primary version"):
        await store.create_key(key, dataclasses.replace(version, keyid="another"))
    assert await store.count_keys() == 0


async def test_get_key_returns_the_primary_version(store: Store) -> None:
    key, version = make_key()
    key = dataclasses.replace(key, primary_version=3)
    version = dataclasses.replace(version, version=3, blob=b"v3")
    await store.create_key(key, version)
    assert await store.get_key(key.keyid) == (key, version)


async def test_list_keys_shows_only_the_apps_own(store: Store) -> None:
    mine = [make_key("app-a", created=1000 + i) for i in range(5)]
    theirs = [make_key("app-b", created=1000 + i) for i in range(3)]
    for key, version in mine + theirs:
        await store.create_key(key, version)
    assert await store.list_keys("app-a") == [key for key, _ in mine]  # oldest first
    assert await store.list_keys("app-b") == [key for key, _ in theirs]
    assert await store.list_keys("app-c") == []


async def test_set_key_state(store: Store) -> None:
    key, version = make_key("app-a")
    await store.create_key(key, version)
    assert await store.set_key_state("app-a", key.keyid, 0)
    assert await store.set_key_state("app-a", key.keyid, 0)  # idempotent
    found = await store.get_key(key.keyid)
    assert found is not None and found[0].state == 0
    assert not await store.set_key_state("app-b", key.keyid, 1)  # another app's key: as if unknown
    assert not await store.set_key_state("app-a", str(uuid.uuid4()), 1)
    found = await store.get_key(key.keyid)
    assert found is not None and found[0].state == 0


async def test_delete_key_cascades_to_versions_and_import(store: Store) -> None:
    key, version = make_key("app-a")
    await store.create_key(key, version)
    await store.put_import(ImportRecord(key.keyid, "token", b"wrapping", "EH_RSA_3072", wall_clock_ms() + 60_000))
    assert not await store.delete_key("app-b", key.keyid)  # not theirs
    assert await store.get_key(key.keyid) is not None
    assert await store.delete_key("app-a", key.keyid)
    assert await store.get_key(key.keyid) is None
    assert await store.get_key_version(key.keyid, 1) is None
    assert not await store.delete_key("app-a", key.keyid)
    # A key made again with the same id has no leftover version or pending import.
    await store.create_key(key, dataclasses.replace(version, blob=b"new"))
    assert await store.take_import(key.keyid, "token", wall_clock_ms()) is None
    assert await store.get_key(key.keyid) == (key, dataclasses.replace(version, blob=b"new"))


async def test_delete_all_keys(store: Store) -> None:
    for appid, n in (("app-a", 4), ("app-b", 2)):
        for _ in range(n):
            await store.create_key(*make_key(appid))
    assert await store.delete_all_keys("app-a") == 4
    assert await store.delete_all_keys("app-a") == 0
    assert await store.list_keys("app-a") == []
    assert len(await store.list_keys("app-b")) == 2
    assert await store.count_keys() == 2


async def test_update_key_version_blob(store: Store) -> None:
    key, version = make_key(blob=b"")
    await store.create_key(key, version)
    await store.update_key_version_blob(key.keyid, 1, b"imported")
    assert await store.get_key_version(key.keyid, 1) == dataclasses.replace(version, blob=b"imported")
    with pytest.raises(errors.KeyNotFound):
        await store.update_key_version_blob(key.keyid, 2, b"x")
    with pytest.raises(errors.KeyNotFound):
        await store.update_key_version_blob(str(uuid.uuid4()), 1, b"x")


async def test_count_keys(store: Store) -> None:
    assert await store.count_keys() == 0
    for _ in range(3):
        await store.create_key(*make_key())
    assert await store.count_keys() == 3


async def test_bulk_create_keys(store: Store) -> None:
    items = [make_key(f"app-{i % 7}", created=10_000 + i) for i in range(20_000)]
    for start in range(0, len(items), 10_000):
        await store.bulk_create_keys(items[start : start + 10_000])
    assert await store.count_keys() == 20_000
    key, version = items[12_345]
    assert await store.get_key(key.keyid) == (key, version)
    listed = await store.list_keys("app-3")  # no limit on a listing
    assert listed == [key for key, _ in items if key.appid == "app-3"]
    with pytest.raises(RecordExists):
        await store.bulk_create_keys(items[:1])
    assert await store.count_keys() == 20_000


# ---------------------------------------------------------------- replay
async def test_a_replayed_entry_is_refused(store: Store) -> None:
    first = entry()
    now = wall_clock_ms()
    assert await store.record_request(first, now)
    assert not await store.record_request(first, now)
    assert not await store.record_request(dataclasses.replace(first, expires_ms=first.expires_ms + 1), now)


async def test_the_same_digest_of_another_app_is_accepted(store: Store) -> None:
    first = entry("app-a")
    now = wall_clock_ms()
    assert await store.record_request(first, now)
    assert await store.record_request(dataclasses.replace(first, appid="app-b"), now)


async def test_an_expired_entry_is_accepted_again(store: Store) -> None:
    now = wall_clock_ms()
    life = 60_000  # long enough that the store's own clock never purges it during the test
    first = ReplayEntry("app-a", b"\x01" * 32, now + life)
    assert await store.record_request(first, now)
    assert not await store.record_request(first, now + life - 1)  # still within its life
    renewed = dataclasses.replace(first, expires_ms=now + 2 * life)
    assert await store.record_request(renewed, now + life)  # expired at now + life: a new request
    assert not await store.record_request(renewed, now + life + 1)  # and the renewed entry holds again


async def test_concurrent_records_of_one_entry_accept_exactly_one(store: Store) -> None:
    same = entry()
    now = wall_clock_ms()
    results = await asyncio.gather(*(store.record_request(same, now) for _ in range(64)))
    assert results.count(True) == 1


async def test_concurrent_records_of_distinct_entries_are_all_accepted(store: Store) -> None:
    now = wall_clock_ms()
    entries = [entry(f"app-{i % 3}") for i in range(300)]
    assert all(await asyncio.gather(*(store.record_request(e, now) for e in entries)))
    assert not any(await asyncio.gather(*(store.record_request(e, now) for e in entries)))


async def test_concurrent_records_with_different_clocks(store: Store) -> None:
    now = wall_clock_ms()
    same = ReplayEntry("app-a", b"\x02" * 32, now + 60_000)
    results = await asyncio.gather(*(store.record_request(same, now + (i % 3)) for i in range(30)))
    assert results.count(True) == 1


async def test_concurrent_takeovers_of_an_expired_entry_accept_exactly_one(store: Store) -> None:
    now = wall_clock_ms()
    life = 60_000
    first = ReplayEntry("app-a", b"\x03" * 32, now + life)
    assert await store.record_request(first, now)
    renewed = dataclasses.replace(first, expires_ms=now + 2 * life)
    others = [entry() for _ in range(20)]
    calls = [store.record_request(renewed, now + life + i % 3) for i in range(30)]
    calls += [store.record_request(e, now + life) for e in others]
    results = await asyncio.gather(*calls)
    assert results[:30].count(True) == 1
    assert all(results[30:])


async def test_a_write_with_a_replay_record_commits_both(store: Store) -> None:
    key, version = make_key()
    record = entry()
    await store.create_key(key, version, replay=record)
    assert await store.get_key(key.keyid) == (key, version)
    assert not await store.record_request(record, wall_clock_ms())


async def test_a_replayed_write_writes_nothing(store: Store) -> None:
    record = entry()
    assert await store.record_request(record, wall_clock_ms())
    key, version = make_key()
    with pytest.raises(ReplayDetected) as caught:
        await store.create_key(key, version, replay=record)
    assert isinstance(caught.value, errors.ReplayError)
    assert caught.value.envelope() == errors.ReplayError().envelope()
    assert await store.get_key(key.keyid) is None
    assert await store.count_keys() == 0


async def test_replayed_updates_and_deletes_change_nothing(store: Store) -> None:
    key, version = make_key("app-a")
    await store.create_key(key, version)
    await store.create_app(AppRecord("app-a", b"blob", 1))
    record = entry()
    assert await store.set_key_state("app-a", key.keyid, 0, replay=record)
    with pytest.raises(ReplayDetected):
        await store.set_key_state("app-a", key.keyid, 1, replay=record)
    with pytest.raises(ReplayDetected):
        await store.delete_key("app-a", key.keyid, replay=record)
    with pytest.raises(ReplayDetected):
        await store.delete_all_keys("app-a", replay=record)
    with pytest.raises(ReplayDetected):
        await store.update_key_version_blob(key.keyid, 1, b"changed", replay=record)
    with pytest.raises(ReplayDetected):
        await store.update_app("app-a", state="revoked", replay=record)
    with pytest.raises(ReplayDetected):
        await store.put_import(ImportRecord(key.keyid, "t", b"w", "EH_RSA_2048", 2**62), replay=record)
    assert await store.get_key(key.keyid) == (dataclasses.replace(key, state=0), version)
    assert await store.get_app("app-a") == AppRecord("app-a", b"blob", 1)
    assert await store.take_import(key.keyid, "t", wall_clock_ms()) is None


async def test_a_failed_write_does_not_burn_its_replay_record(store: Store) -> None:
    key, version = make_key()
    await store.create_key(key, version)
    record = entry()
    with pytest.raises(RecordExists):
        await store.create_key(key, version, replay=record)
    with pytest.raises(errors.KeyNotFound):
        await store.update_key_version_blob(str(uuid.uuid4()), 1, b"x", replay=record)
    assert await store.record_request(record, wall_clock_ms())


async def test_concurrent_replayed_writes_commit_once(store: Store) -> None:
    record = entry()
    keys = [make_key() for _ in range(20)]
    results = await asyncio.gather(
        *(store.create_key(key, version, replay=record) for key, version in keys), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, ReplayDetected) for r in results if r is not None)
    assert await store.count_keys() == 1


async def test_one_failing_write_does_not_fail_the_others(store: Store) -> None:
    existing, existing_version = make_key()
    await store.create_key(existing, existing_version)
    fresh = [make_key() for _ in range(30)]
    writes = [store.create_key(key, version) for key, version in fresh]
    writes.insert(15, store.create_key(existing, existing_version))
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert [type(r) for r in results].count(RecordExists) == 1
    assert results.count(None) == 30
    assert await store.count_keys() == 31


# ---------------------------------------------------------------- BYOK import tokens
def pending(keyid: str, token: str = "token-1", ttl_ms: int = 60_000) -> ImportRecord:
    return ImportRecord(keyid, token, b"sealed rsa pair", "EH_RSA_3072", wall_clock_ms() + ttl_ms)


async def test_take_import_is_single_use(store: Store) -> None:
    key, version = make_key(blob=b"")
    await store.create_key(key, version)
    rec = pending(key.keyid)
    await store.put_import(rec)
    now = wall_clock_ms()
    assert await store.take_import(key.keyid, "wrong", now) is None
    assert await store.take_import(key.keyid, "token-", now) is None
    assert await store.take_import(key.keyid, "token-1", now) == rec  # a wrong token did not burn it
    assert await store.take_import(key.keyid, "token-1", now) is None


async def test_take_import_under_concurrency_has_one_winner(store: Store) -> None:
    key, version = make_key(blob=b"")
    await store.create_key(key, version)
    await store.put_import(pending(key.keyid))
    now = wall_clock_ms()
    results = await asyncio.gather(*(store.take_import(key.keyid, "token-1", now) for _ in range(32)))
    assert sum(r is not None for r in results) == 1


async def test_take_import_refuses_an_expired_token(store: Store) -> None:
    key, version = make_key(blob=b"")
    await store.create_key(key, version)
    rec = pending(key.keyid)
    await store.put_import(rec)
    assert await store.take_import(key.keyid, "token-1", rec.expires_ms) is None
    assert await store.take_import(key.keyid, "token-1", rec.expires_ms - 1) == rec


async def test_put_import_replaces_the_pending_one(store: Store) -> None:
    key, version = make_key(blob=b"")
    await store.create_key(key, version)
    await store.put_import(pending(key.keyid, "old"))
    newer = dataclasses.replace(pending(key.keyid, "new"), wrapping_spec="EH_RSA_2048")
    await store.put_import(newer)
    now = wall_clock_ms()
    assert await store.take_import(key.keyid, "old", now) is None
    assert await store.take_import(key.keyid, "new", now) == newer


async def test_put_import_of_an_unknown_key(store: Store) -> None:
    with pytest.raises(errors.KeyNotFound):
        await store.put_import(pending(str(uuid.uuid4())))


async def test_take_import_with_replay(store: Store) -> None:
    key, version = make_key(blob=b"")
    await store.create_key(key, version)
    rec = pending(key.keyid)
    await store.put_import(rec)
    record = entry()
    assert await store.take_import(key.keyid, "wrong", wall_clock_ms(), replay=record) is None
    with pytest.raises(ReplayDetected):  # the failed attempt was still a request, and it is recorded
        await store.take_import(key.keyid, "token-1", wall_clock_ms(), replay=record)
    assert await store.take_import(key.keyid, "token-1", wall_clock_ms(), replay=entry()) == rec


# ---------------------------------------------------------------- enrollment tokens
async def test_enroll_tokens_are_single_use(store: Store) -> None:
    now = wall_clock_ms()
    await store.put_enroll_token(b"\x01" * 32, now + 60_000)
    await store.put_enroll_token(b"\x02" * 32, now + 10)
    assert not await store.take_enroll_token(b"\x03" * 32, now)
    assert not await store.take_enroll_token(b"\x02" * 32, now + 10)  # expired
    results = await asyncio.gather(*(store.take_enroll_token(b"\x01" * 32, now) for _ in range(16)))
    assert results.count(True) == 1
    assert not await store.take_enroll_token(b"\x01" * 32, now)
