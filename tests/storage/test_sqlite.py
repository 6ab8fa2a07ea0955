"""What only the SQLite backend has: pragmas, files and modes, durability across kill -9, group commit."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ehsm_kms import errors
from ehsm_kms.storage import AppRecord, ReplayEntry, SqliteStore
from ehsm_kms.storage.base import load_migrations, wall_clock_ms
from ehsm_kms.storage.sqlite import _split_sql
from tests.storage.conftest import entry, make_key

pytestmark = pytest.mark.anyio


async def test_pragmas_are_set(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "kms.db")
    try:
        await store.migrate()
        pragmas = await store.pragmas()
    finally:
        await store.close()
    for role in ("writer", "reader"):
        assert pragmas[role]["journal_mode"] == "wal", role
        assert pragmas[role]["synchronous"] == 2, role  # FULL: a commit survives power loss
        assert pragmas[role]["foreign_keys"] == 1, role
    # The writer waits for the write lock itself, in short steps (test_a_held_write_lock_is_waited_for_briefly).
    assert pragmas["writer"]["busy_timeout"] == 0
    assert pragmas["reader"]["busy_timeout"] == 5000
    assert pragmas["writer"]["query_only"] == 0
    assert pragmas["reader"]["query_only"] == 1


async def test_the_file_and_its_directories_are_created_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "kms.db"
    store = SqliteStore(path)
    try:
        await store.migrate()
    finally:
        await store.close()
    for directory in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        versions = conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
    assert versions == [(m.version, m.name) for m in load_migrations("sqlite")]


async def test_the_data_survives_close_and_reopen(tmp_path: Path) -> None:
    key, version = make_key()
    first = SqliteStore(tmp_path / "kms.db")
    try:
        await first.migrate()
        await first.create_key(key, version)
        await first.create_app(AppRecord("app-a", b"blob", 1))
    finally:
        await first.close()
    second = SqliteStore(tmp_path / "kms.db")
    try:
        await second.migrate()
        assert await second.get_key(key.keyid) == (key, version)
        assert await second.get_app("app-a") == AppRecord("app-a", b"blob", 1)
    finally:
        await second.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys, uuid
    from ehsm_kms.storage import KeyRecord, KeyVersionRecord, SqliteStore

    async def main(path, per_task):
        store = SqliteStore(path)
        await store.migrate()

        async def create():
            for _ in range(per_task):
                keyid = str(uuid.uuid4())
                key = KeyRecord(keyid, "app-a", "EH_AES_GCM_256", "EH_KEYUSAGE_ENCRYPT_DECRYPT",
                                "EH_INTERNAL_KEY", 1, 0, 0)
                await store.create_key(key, KeyVersionRecord(keyid, 1, os.urandom(64), 0))
                os.write(1, (keyid + "\\n").encode())  # acknowledged: create_key returned

        await asyncio.gather(*(create() for _ in range(16)))
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def test_kill_9_loses_no_acknowledged_key(tmp_path: Path) -> None:
    path = tmp_path / "kms.db"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    # 16 tasks x 2000 keys: bounded, it ends by itself; it is killed long before.
    child = subprocess.Popen([sys.executable, str(script), str(path), "2000"], stdout=subprocess.PIPE)
    assert child.stdout is not None
    acknowledged: list[str] = []
    try:
        for line in child.stdout:
            acknowledged.append(line.decode())
            if len(acknowledged) == 1500:
                os.kill(child.pid, signal.SIGKILL)
                break
        acknowledged += [line.decode() for line in child.stdout]  # written before the kill
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL, "the writer finished before it could be killed"
    keyids = {line.strip() for line in acknowledged if line.endswith("\n")}
    assert len(keyids) >= 1500

    async def reopened() -> tuple[set[str], set[str]]:
        store = SqliteStore(path)
        try:
            await store.migrate()
            listed = {key.keyid for key in await store.list_keys("app-a")}
            with_version = {keyid for keyid in listed if await store.get_key(keyid) is not None}
            return listed, with_version
        finally:
            await store.close()

    stored, whole = asyncio.run(reopened())
    assert keyids <= stored, f"{len(keyids - stored)} acknowledged keys were lost"
    assert whole == stored  # every key with its version: nothing half-written


async def test_an_unusable_path_fails_fast_and_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    store = SqliteStore(blocker / "kms.db")
    try:
        with pytest.raises(errors.StoreUnavailable) as caught:
            await store.migrate()
        assert caught.value.message == "database error"  # the wire message says nothing more
        assert any(str(blocker) in note for note in caught.value.__notes__)
        with pytest.raises(errors.StoreUnavailable):
            await store.get_app("app-a")
        blocker.unlink()  # the operator fixes the path: the store recovers by itself
        await store.migrate()
        await store.create_app(AppRecord("app-a", b"blob", 1))
        assert await store.get_app("app-a") is not None
    finally:
        await store.close()


async def test_writes_waiting_together_share_one_commit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "kms.db")
    try:
        await store.migrate()

        # A big write keeps the writer busy while the records queue up behind it.
        async def records_meanwhile() -> tuple[int, list[bool]]:
            await asyncio.sleep(0.01)
            before = store.commits
            now = wall_clock_ms()
            return before, await asyncio.gather(*(store.record_request(entry(), now) for _ in range(200)))

        bulk = store.bulk_create_keys([make_key() for _ in range(20_000)])
        _, (before, results) = await asyncio.gather(bulk, records_meanwhile())
        assert all(results)
        assert store.commits - before <= 3  # the big write, then about one commit for 200 records
    finally:
        await store.close()


async def test_expired_replay_rows_are_purged_in_bounded_batches(tmp_path: Path) -> None:
    now = [wall_clock_ms()]
    store = SqliteStore(tmp_path / "kms.db", purge_interval_s=0, purge_batch=100, clock=lambda: now[0])
    try:
        await store.migrate()
        start = now[0]
        old = [ReplayEntry("app-a", os.urandom(32), start + 1000) for _ in range(250)]
        assert all(await asyncio.gather(*(store.record_request(e, start) for e in old)))
        live = ReplayEntry("app-a", os.urandom(32), start + 600_000)
        assert await store.record_request(live, start)
        now[0] = start + 2000  # the old ones have expired
        left = []
        for _ in range(4):
            await store.record_request(entry(), now[0])
            with sqlite3.connect(tmp_path / "kms.db") as conn:
                query = "SELECT count(*) FROM replay WHERE expires_ms <= ?"
                left.append(conn.execute(query, (now[0],)).fetchone()[0])
        assert left == [150, 50, 0, 0]  # at most purge_batch rows per commit
        assert not await store.record_request(live, now[0])  # the unexpired row stayed
    finally:
        await store.close()


async def test_a_held_write_lock_is_waited_for_then_given_up(tmp_path: Path) -> None:
    """Another process's write transaction (here another connection) holds the lock: the store's write waits
    and commits once it is released; held longer than ``busy_timeout_ms``, the write fails as unavailable."""
    path = tmp_path / "kms.db"
    store = SqliteStore(path, busy_timeout_ms=2000)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store.migrate()
        app = AppRecord("app-locked", b"blob", wall_clock_ms(), "active")
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(store.create_app(app))
        await asyncio.sleep(0.3)
        assert not write.done()  # waiting for the lock
        other.execute("COMMIT")
        await asyncio.wait_for(write, 5)
        assert await store.get_app("app-locked") == app
    finally:
        await store.close()
        other.close()
    impatient = SqliteStore(path, busy_timeout_ms=200)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(errors.StoreUnavailable):
            await asyncio.wait_for(impatient.create_app(AppRecord("app-late", b"b", 1, "active")), 10)
        other.execute("ROLLBACK")
        assert await impatient.get_app("app-late") is None
    finally:
        await impatient.close()
        other.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "kms.db")
    try:
        await store.migrate()
        with sqlite3.connect(tmp_path / "kms.db") as conn:
            conn.execute("INSERT INTO schema_version VALUES (99, 'future', 0)")
        with pytest.raises(errors.ConfigError, match="newer"):
            await store.migrate()
    finally:
        await store.close()


async def test_an_old_schema_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "kms.db"
    first = load_migrations("sqlite")[0]
    with sqlite3.connect(path) as conn:  # a database left at version 1
        conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, name text, applied_ms bigint)")
        for statement in _split_sql(first.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1, ?, 0)", (first.name,))
    store = SqliteStore(path)
    try:
        await store.migrate()
        await store.put_enroll_token(b"\x01" * 32, wall_clock_ms() + 1000)
        assert await store.take_enroll_token(b"\x01" * 32, wall_clock_ms())
    finally:
        await store.close()


def test_split_sql() -> None:
    script = "-- a comment\nCREATE TABLE a (x TEXT DEFAULT ';');\n\n-- another\nCREATE INDEX i ON a (x);\n"
    assert _split_sql(script) == ["CREATE TABLE a (x TEXT DEFAULT ';');", "CREATE INDEX i ON a (x);"]
    with pytest.raises(ValueError, match="incomplete"):
        _split_sql("CREATE TABLE a (x")


def test_migrations_exist_for_both_backends_with_the_same_numbers() -> None:
    sqlite, postgres = load_migrations("sqlite"), load_migrations("postgres")
    assert [(m.version, m.name) for m in sqlite] == [(m.version, m.name) for m in postgres]
    assert len(sqlite) >= 2
