"""The secret manager's store methods: every backend passes exactly these tests (``store`` is parametrized).

``twin`` is a second store on the same database, i.e. another node: what the constraints promise must hold
between stores, not only inside one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from contextlib import closing
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from ehsm_kms import errors
from ehsm_kms.storage import RecordExists, Store
from ehsm_kms.storage.base import wall_clock_ms
from ehsm_kms.storage.secret_records import SecretRecord, SecretVersionInfo, SecretVersionRecord
from tests.pg import PG_DSN

pytestmark = pytest.mark.anyio

DAY = 86_400_000
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F)) + "\t\n\r"
ODD = "\x00 é ☃ 😀 \u200b & = % ' \" \\"


def secret(name: str = "db", appid: str = "app-a", *, created: int | None = None, **kw: object) -> SecretRecord:
    return SecretRecord(str(uuid.uuid4()), appid, name, wall_clock_ms() if created is None else created, **kw)  # type: ignore[arg-type]


def first(rec: SecretRecord, data: bytes = b"sealed v1") -> SecretVersionRecord:
    return SecretVersionRecord(rec.secret_id, 1, data, rec.created_ms)


async def make(store: Store, name: str = "db", appid: str = "app-a", **kw: object) -> SecretRecord:
    rec = secret(name, appid, **kw)
    await store.create_secret(rec, first(rec))
    return rec


async def put(store: Store, rec: SecretRecord, version: int, data: bytes | None = None) -> bool:
    sealed = data if data is not None else f"sealed v{version}".encode()
    return await store.put_secret_version(SecretVersionRecord(rec.secret_id, version, sealed, wall_clock_ms()))


# ---------------------------------------------------------------- create, read, list
async def test_create_and_get_keep_every_field(store: Store) -> None:
    rec = secret(
        "db-password",
        encryption_key_id=str(uuid.uuid4()),
        description="the database",
        rotation_interval="30d",
        next_rotation_ms=123,
    )
    await store.create_secret(rec, first(rec))
    assert await store.get_secret("app-a", "db-password", wall_clock_ms()) == rec
    assert await store.get_secret("app-a", "other", wall_clock_ms()) is None
    assert await store.get_secret("app-b", "db-password", wall_clock_ms()) is None
    assert await store.get_secret_version(rec.secret_id) == first(rec)
    assert await store.get_secret_version(rec.secret_id, 1) == first(rec)
    assert await store.get_secret_version(rec.secret_id, 2) is None


@pytest.mark.parametrize("name", [PRINTABLE[:64], ODD, "😀" * 32, "x"])
async def test_names_and_descriptions_come_back_exact(store: Store, name: str) -> None:
    description = (PRINTABLE + ODD) * 40
    rec = await make(store, name, description=description)
    got = await store.get_secret("app-a", name, wall_clock_ms())
    assert got is not None and got.name == name and got.description == description
    assert [s.name for s in await store.list_secrets("app-a", wall_clock_ms(), name)] == [name]
    assert await store.get_secret("app-a", name + " ", wall_clock_ms()) is None
    assert rec.secret_id == got.secret_id


async def test_a_name_is_unique_per_app_pending_deletion_included(store: Store, twin: Store) -> None:
    rec = await make(store, "db")
    with pytest.raises(RecordExists):
        await make(twin, "db")
    now = wall_clock_ms()
    assert await store.schedule_secret_deletion("app-a", "db", now, now + DAY)
    with pytest.raises(RecordExists):
        await make(twin, "db")
    await make(store, "db", "app-b")  # another app's name space
    await make(store, "DB")  # exact, case included
    got = await store.get_secret("app-a", "db", wall_clock_ms())
    assert got is not None and got.secret_id == rec.secret_id and got.current_version == 1


async def test_concurrent_creates_of_one_name_make_one(store: Store, twin: Store) -> None:
    outcomes = await asyncio.gather(
        *(make(store if i % 2 else twin, "race") for i in range(10)), return_exceptions=True
    )
    made = [o for o in outcomes if isinstance(o, SecretRecord)]
    assert len(made) == 1
    assert all(isinstance(o, RecordExists) for o in outcomes if o is not made[0])
    got = await store.get_secret("app-a", "race", wall_clock_ms())
    assert got is not None and got.secret_id == made[0].secret_id


async def test_create_checks_its_first_version(store: Store) -> None:
    rec = secret()
    with pytest.raises(ValueError, match="version 1"):
        await store.create_secret(rec, SecretVersionRecord(rec.secret_id, 2, b"x", 1))
    with pytest.raises(ValueError, match="version 1"):
        await store.create_secret(rec, SecretVersionRecord(str(uuid.uuid4()), 1, b"x", 1))
    with pytest.raises(ValueError, match="pending"):
        pending = secret(deleted_ms=1, planned_delete_ms=2)
        await store.create_secret(pending, first(pending))
    assert await store.list_secrets("app-a", wall_clock_ms()) == []


async def test_list_secrets_oldest_first_no_limit_pending_included(store: Store) -> None:
    base = wall_clock_ms()
    names = [f"s{i:03d}" for i in range(130)]
    for i, name in enumerate(reversed(names)):
        await make(store, name, created=base + i)
    await make(store, "elsewhere", "app-b")
    now = wall_clock_ms() + 1000
    assert await store.schedule_secret_deletion("app-a", "s000", now, now + DAY)
    listed = await store.list_secrets("app-a", now)
    assert [s.name for s in listed] == list(reversed(names))
    assert [s.name for s in listed if s.pending_deletion] == ["s000"]
    assert [s.name for s in await store.list_secrets("app-a", now, "s007")] == ["s007"]
    assert await store.list_secrets("app-a", now, "nope") == []


# ---------------------------------------------------------------- versions
async def test_versions_are_a_compare_and_swap(store: Store) -> None:
    rec = await make(store)
    assert await put(store, rec, 2)
    assert not await put(store, rec, 2)  # version 2 exists: its writer lost the race
    assert not await put(store, rec, 4)  # 3 is not the current version: no gap
    assert not await put(store, rec, 1)
    assert await put(store, rec, 3)
    got = await store.get_secret("app-a", "db", wall_clock_ms())
    assert got is not None and got.current_version == 3
    current = await store.get_secret_version(rec.secret_id)
    assert current is not None and (current.version, current.ciphertext) == (3, b"sealed v3")
    v2 = await store.get_secret_version(rec.secret_id, 2)
    assert v2 is not None and v2.ciphertext == b"sealed v2"
    listed = await store.list_secret_versions(rec.secret_id)
    assert [v.version for v in listed] == [1, 2, 3] and all(isinstance(v, SecretVersionInfo) for v in listed)


async def test_no_version_is_added_to_a_secret_pending_deletion_or_gone(store: Store) -> None:
    rec = await make(store)
    now = wall_clock_ms()
    assert await store.schedule_secret_deletion("app-a", "db", now, now + DAY)
    assert not await put(store, rec, 2)
    assert await store.restore_secret("app-a", "db", wall_clock_ms())
    assert await put(store, rec, 2)
    assert await store.delete_secret("app-a", "db", wall_clock_ms())
    assert not await put(store, rec, 3)
    assert not await store.put_secret_version(SecretVersionRecord(str(uuid.uuid4()), 2, b"x", 1))


def raw(url: str, statement: str, *params: Any) -> None:
    """One statement on the store's database, bypassing the store (as a buggy or hostile writer would)."""
    if url.startswith("sqlite:"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10)) as conn:
            conn.execute(statement, params)
            conn.commit()
        return
    schema = parse_qs(urlsplit(url).query)["schema"][0]
    with psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]


async def test_the_database_refuses_a_duplicate_version_and_a_second_current_one(store: Store, url: str) -> None:
    rec = await make(store)
    insert = (
        "INSERT INTO secret_versions (secret_id, version, ciphertext, created_ms, is_current) VALUES (?, ?, ?, ?, ?)"
    )
    for version, current in ((1, False), (2, True)):
        with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
            raw(url, insert, rec.secret_id, version, b"x", 1, current)
    raw(url, insert, rec.secret_id, 2, b"x", 1, False)  # a non-current row is no second current one
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        raw(url, "UPDATE secret_versions SET is_current = TRUE WHERE secret_id = ? AND version = 2", rec.secret_id)
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        raw(url, "INSERT INTO secrets (secret_id, appid, name, created_ms) VALUES (?, ?, ?, ?)", "x", "app-a", b"db", 1)


async def test_concurrent_puts_of_one_version_have_one_winner(store: Store, twin: Store) -> None:
    rec = await make(store)
    results = await asyncio.gather(*(put(store if i % 2 else twin, rec, 2, bytes([i])) for i in range(20)))
    assert results.count(True) == 1
    current = await store.get_secret_version(rec.secret_id)
    assert current is not None and current.version == 2
    assert current.ciphertext == bytes([results.index(True)])


async def test_concurrent_writers_that_retry_make_versions_without_gaps(store: Store, twin: Store) -> None:
    """What PutSecretValue does (read the current version, try the next one, retry on losing) from two stores."""
    rec = await make(store)
    writers = 40

    async def writer(i: int) -> int:
        mine = store if i % 2 else twin
        attempts = 0
        while True:
            attempts += 1
            got = await mine.get_secret("app-a", "db", wall_clock_ms())
            assert got is not None
            if await put(mine, rec, got.current_version + 1, f"writer {i}".encode()):
                return attempts
            await asyncio.sleep(0)

    attempts = await asyncio.gather(*(writer(i) for i in range(writers)))
    listed = await store.list_secret_versions(rec.secret_id)
    assert [v.version for v in listed] == list(range(1, writers + 2))
    values = set()
    for number in range(2, writers + 2):
        stored = await store.get_secret_version(rec.secret_id, number)
        assert stored is not None
        values.add(stored.ciphertext)
    assert values == {f"writer {i}".encode() for i in range(writers)}
    assert max(attempts) > 1  # they really raced


# ---------------------------------------------------------------- description, deletion, restore
async def test_update_description(store: Store) -> None:
    await make(store, description="old")
    assert await store.update_secret_description("app-a", "db", "new ☃")
    got = await store.get_secret("app-a", "db", wall_clock_ms())
    assert got is not None and got.description == "new ☃"
    assert await store.update_secret_description("app-a", "db", None)
    got = await store.get_secret("app-a", "db", wall_clock_ms())
    assert got is not None and got.description is None
    assert not await store.update_secret_description("app-a", "nope", "x")
    assert not await store.update_secret_description("app-b", "db", "x")
    now = wall_clock_ms()
    assert await store.schedule_secret_deletion("app-a", "db", now, now + DAY)
    assert not await store.update_secret_description("app-a", "db", "x")


async def test_schedule_restore_and_due_time(store: Store) -> None:
    rec = await make(store)
    await put(store, rec, 2)
    t0 = wall_clock_ms()
    due = t0 + 7 * DAY
    assert await store.schedule_secret_deletion("app-a", "db", t0, due)
    pending = await store.get_secret("app-a", "db", due - 1)
    assert pending is not None and (pending.deleted_ms, pending.planned_delete_ms) == (t0, due)
    assert pending.pending_deletion and pending.current_version == 2
    assert await store.restore_secret("app-a", "db", due - 1)
    restored = await store.get_secret("app-a", "db", due - 1)
    assert restored is not None and not restored.pending_deletion and restored.deleted_ms is None
    assert await store.restore_secret("app-a", "db", due - 1)  # not pending: harmless, still found
    # Scheduled again: from its due time on it is gone, before any job ran.
    assert await store.schedule_secret_deletion("app-a", "db", t0, due)
    assert await store.get_secret("app-a", "db", due) is None
    assert await store.list_secrets("app-a", due) == []
    assert not await store.restore_secret("app-a", "db", due)
    assert not await store.delete_secret("app-a", "db", due)
    assert not await store.schedule_secret_deletion("app-a", "db", due, due + DAY)
    assert not await store.update_secret_description("app-a", "db", "x")
    # Its name can be used again; the secret that was due is replaced, not revived.
    again = secret("db", created=due + 1)
    await store.create_secret(again, first(again, b"new"))
    got = await store.get_secret("app-a", "db", due + 1)
    assert got is not None and got.secret_id == again.secret_id and got.current_version == 1
    assert await store.get_secret_version(rec.secret_id, 2) is None
    assert await store.purge_due_secrets(due + DAY, 10) == []


async def test_schedule_again_replaces_the_times(store: Store) -> None:
    await make(store)
    now = wall_clock_ms()
    assert await store.schedule_secret_deletion("app-a", "db", now, now + 30 * DAY)
    assert await store.schedule_secret_deletion("app-a", "db", now + 1, now + DAY)
    got = await store.get_secret("app-a", "db", now)
    assert got is not None and got.planned_delete_ms == now + DAY
    assert not await store.schedule_secret_deletion("app-b", "db", now, now + DAY)


async def test_force_delete_removes_every_version(store: Store) -> None:
    rec = await make(store)
    for number in range(2, 40):
        assert await put(store, rec, number)
    await make(store, "kept")
    assert not await store.delete_secret("app-b", "db", wall_clock_ms())
    assert await store.delete_secret("app-a", "db", wall_clock_ms())
    assert not await store.delete_secret("app-a", "db", wall_clock_ms())
    assert await store.get_secret("app-a", "db", wall_clock_ms()) is None
    assert await store.list_secret_versions(rec.secret_id) == []
    assert await store.get_secret_version(rec.secret_id) is None
    assert [s.name for s in await store.list_secrets("app-a", wall_clock_ms())] == ["kept"]


# ---------------------------------------------------------------- the deletion job's claim
async def test_purge_takes_due_secrets_in_batches_each_once(store: Store) -> None:
    now = wall_clock_ms()
    due = []
    for i in range(25):
        rec = await make(store, f"due{i}", "app-a" if i % 2 else "app-b")
        await put(store, rec, 2)
        assert await store.schedule_secret_deletion(rec.appid, rec.name, now, now + DAY + i)
        due.append(rec)
    await make(store, "later")
    assert await store.schedule_secret_deletion("app-a", "later", now, now + 9 * DAY)
    await make(store, "kept")
    assert await store.purge_due_secrets(now + DAY - 1, 10) == []
    taken = []
    while batch := await store.purge_due_secrets(now + 2 * DAY, 10):
        assert len(batch) <= 10
        taken += batch
    assert sorted(p.secret_id for p in taken) == sorted(r.secret_id for r in due)
    assert [p.planned_delete_ms for p in taken] == sorted(p.planned_delete_ms for p in taken)  # oldest first
    assert {p.appid for p in taken} == {"app-a", "app-b"}
    for rec in due:
        assert await store.list_secret_versions(rec.secret_id) == []
    left = await store.list_secrets("app-a", now)
    assert sorted(s.name for s in left) == ["kept", "later"]


async def test_two_stores_purging_at_once_delete_each_secret_once(store: Store, twin: Store) -> None:
    now = wall_clock_ms()
    names = [f"s{i}" for i in range(120)]
    for name in names:
        await make(store, name)
        assert await store.schedule_secret_deletion("app-a", name, now, now + DAY)

    async def drain(mine: Store) -> list[str]:
        done: list[str] = []
        while batch := await mine.purge_due_secrets(now + DAY, 7):
            done += [p.secret_id for p in batch]
            await asyncio.sleep(0)
        return done

    results = await asyncio.gather(*(drain(store if i % 2 else twin) for i in range(4)))
    everything = [sid for result in results for sid in result]
    assert len(everything) == len(set(everything)) == len(names)
    assert await store.list_secrets("app-a", now) == []


# ---------------------------------------------------------------- the default secret key
async def test_default_secret_key_first_one_wins(store: Store, twin: Store) -> None:
    assert await store.get_secret_key("app-a") is None
    assert await store.put_secret_key("app-a", b"first", 1) == b"first"
    assert await twin.put_secret_key("app-a", b"second", 2) == b"first"
    assert await twin.get_secret_key("app-a") == b"first"
    assert await store.get_secret_key("app-b") is None
    racing = await asyncio.gather(*(store.put_secret_key("app-c", bytes([i]), i) for i in range(10)))
    assert len(set(racing)) == 1


async def test_a_closed_store_is_unavailable_for_secrets(store: Store) -> None:
    await store.close()
    with pytest.raises(errors.StoreUnavailable):
        await store.get_secret("app-a", "db", wall_clock_ms())
    with pytest.raises(errors.StoreUnavailable):
        await make(store)
    with pytest.raises(errors.StoreUnavailable):
        await store.purge_due_secrets(wall_clock_ms(), 10)
