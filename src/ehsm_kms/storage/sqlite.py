"""The embedded store: one SQLite file in WAL mode, driven from threads so the event loop never waits on disk.

Writes go to one writer thread through a queue, with group commit: the writer takes every operation waiting
in the queue, runs them in one transaction (each inside its own SAVEPOINT, so a failing operation is rolled
back alone), commits once and only then resolves the callers' futures. ``synchronous=FULL`` makes that commit
durable (DESIGN invariant 4); group commit makes the fsync cost per batch, not per request, which is what lets
replay records of thousands of requests per second go to disk.

Reads go to a few reader threads, each with its own connection (WAL readers never wait for the writer); a
reader too takes every read waiting and answers them with one wake-up of the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

from ehsm_kms import errors
from ehsm_kms.storage.base import QUERIES as Q
from ehsm_kms.storage.base import (
    PurgeSchedule,
    RecordExists,
    ReplayDetected,
    check_new_key,
    import_row,
    key_row,
    key_with_primary,
    load_migrations,
    schema_too_new,
    token_matches,
    unavailable,
    version_row,
    wall_clock_ms,
)
from ehsm_kms.storage.keyadmin_sqlite import KeyAdminSqlite
from ehsm_kms.storage.quotes_sqlite import SqliteQuotes
from ehsm_kms.storage.records import AppRecord, ImportRecord, KeyRecord, KeyVersionRecord, ReplayEntry
from ehsm_kms.storage.replay_sqlite import record_many
from ehsm_kms.storage.rewrap_sqlite import RewrapSqlite
from ehsm_kms.storage.secrets_sqlite import SqliteSecrets

__all__ = ["SqliteStore"]

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
Outcome = tuple["_Job", Any, BaseException | None]

_REPLAY_PURGE: Final = (
    "DELETE FROM replay WHERE (appid, digest) IN (SELECT appid, digest FROM replay WHERE expires_ms <= ? LIMIT ?)"
)


class _Job:
    """One caller's operation. ``op`` runs in its own savepoint; a job without ``op`` is a record_request,
    and all of those in a batch are recorded together (see ``record_many``). ``purges``: the job writes replay
    records (alone, or with audit records), so its transaction may also delete expired ones."""

    __slots__ = ("future", "loop", "now_ms", "op", "purges", "replay")

    def __init__(
        self,
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
        op: Op | None,
        replay: ReplayEntry | None = None,
        now_ms: int = 0,
        purges: bool = False,
    ) -> None:
        self.future = future
        self.loop = loop
        self.op = op
        self.replay = replay
        self.now_ms = now_ms
        self.purges = purges or op is None


def _resolve(outcomes: list[Outcome]) -> None:
    for job, result, exc in outcomes:
        if job.future.done():  # the caller was cancelled; the operation itself still ran
            continue
        if exc is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(exc)


def _deliver(outcomes: list[Outcome]) -> None:
    """Hand results back with one wake-up per event loop (normally there is one loop)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, items)


def _run_one(op: Op, conn: sqlite3.Connection) -> list[Any]:
    return [op(conn)]


def _join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


def _split_sql(script: str) -> list[str]:
    """A migration file's statements (executescript would commit; a migration is one transaction)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buf[:60]!r}")
    return statements


def _prepare_path(path: Path) -> None:
    """Create missing directories (0700) and the database file (0600; -wal and -shm get the file's mode)."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


class SqliteStore(SqliteSecrets, KeyAdminSqlite, SqliteQuotes, RewrapSqlite):
    """The Store protocol on one SQLite file (see the module docstring for the threading model).

    ``max_batch`` bounds how many writes share one commit; ``purge_interval_s``/``purge_batch`` bound the
    deletion of expired replay rows. ``clock`` gives the time (ms) for ``replay=`` writes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readers: int = 2,
        busy_timeout_ms: int = 5000,
        cache_kib: int = 8192,
        max_batch: int = 1000,
        purge_interval_s: float = 1.0,
        purge_batch: int = 10_000,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if readers < 1:
            raise ValueError("a SQLite store needs at least one reader thread")
        self.path = Path(path)
        self._readers = readers
        self._busy_timeout_ms = busy_timeout_ms
        self._cache_kib = cache_kib
        self._max_batch = max_batch
        self._purge = PurgeSchedule(purge_interval_s, purge_batch)
        self._clock = clock or wall_clock_ms
        self._writes: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._reads: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._writer_opened = threading.Event()
        self._closed = False
        self.commits = 0  # transactions committed by the writer (group commit: usually far fewer than writes)

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # ---------------------------------------------------------------- threads
    def _start(self) -> None:
        self._threads = [threading.Thread(target=self._writer_main, name="ehsm-sqlite-writer", daemon=True)]
        self._threads += [
            threading.Thread(target=self._reader_main, name=f"ehsm-sqlite-reader-{i}", daemon=True)
            for i in range(self._readers)
        ]
        for thread in self._threads:
            thread.start()

    def _submit(
        self,
        target: queue.SimpleQueue[_Job | None],
        op: Op | None,
        replay: ReplayEntry | None = None,
        now: int = 0,
        *,
        purges: bool = False,
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise unavailable(f"SQLite database {self.path}", RuntimeError("the store is closed"))
            if not self._threads:
                self._start()
            target.put(_Job(future, loop, op, replay, now, purges))
        return future

    async def _write(self, op: Callable[[sqlite3.Connection], T], *, purges: bool = False) -> T:
        result: T = await self._submit(self._writes, op, purges=purges)
        return result

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._submit(self._reads, op)
        return result

    def _connect(self, *, writer: bool) -> sqlite3.Connection:
        if writer:
            _prepare_path(self.path)
            conn = sqlite3.connect(self.path, isolation_level=None, cached_statements=256)
        else:  # readers never create the file: that is the writer's job, with the right modes
            uri = f"file:{quote(str(self.path.absolute()))}?mode=rw"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, cached_statements=256)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            if writer:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal_mode is {mode})")
                conn.execute("PRAGMA journal_size_limit = 67108864")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA cache_size = -{int(self._cache_kib)}")
            if writer:  # the writer waits for the write lock itself (:meth:`_locked`), in short steps
                conn.execute("PRAGMA busy_timeout = 0")
            else:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _locked(self, conn: sqlite3.Connection, statement: str) -> None:
        """``BEGIN IMMEDIATE`` or ``COMMIT``, waiting while another process holds the write lock (several workers
        or nodes on one file), for up to ``busy_timeout_ms``.

        SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between tries, so a writer that loses the
        lock to another process a few times waits tens of milliseconds while the lock is free again within a
        commit (about 0.3 ms here): with two workers, p99 latency went to about 100 ms. This loop tries again
        after 0.1 ms, doubling to at most 2 ms. A busy ``COMMIT`` leaves the transaction open, so it is retried.
        """
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        delay = 0.0001
        while True:
            try:
                conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)

    def _take_batch(self, source: queue.SimpleQueue[_Job | None], first: _Job) -> tuple[list[_Job], bool]:
        """``first`` and everything else already waiting (up to max_batch); True when a stop sentinel came."""
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                job = source.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _fail_all(self, batch: list[_Job], exc: BaseException) -> None:
        _deliver([(job, None, exc) for job in batch])

    def _writer_main(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect(writer=True)
        except Exception:  # reported to the first operation, which retries the connection
            conn = None
        finally:
            self._writer_opened.set()
        stop = False
        while not stop:
            first = self._writes.get()
            if first is None:
                break
            batch, stop = self._take_batch(self._writes, first)
            if conn is None:
                try:
                    conn = self._connect(writer=True)
                except Exception as exc:
                    self._fail_all(batch, unavailable(f"cannot open SQLite database {self.path}", exc))
                    continue
            outcomes: list[Outcome] = []
            try:
                healthy = self._run_batch(conn, batch, outcomes)
            except Exception as exc:  # a savepoint statement itself failed: fail what is not yet answered
                answered = {id(job) for job, _, _ in outcomes}
                err = unavailable(f"a write to SQLite database {self.path} failed", exc)
                outcomes += [(job, None, err) for job in batch if id(job) not in answered]
                healthy = False
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            if not healthy:
                conn.close()
                conn = None
            _deliver(outcomes)
        if conn is not None:
            conn.close()

    def _units(self, batch: list[_Job]) -> list[tuple[list[_Job], Callable[[sqlite3.Connection], list[Any]]]]:
        """The batch as units that each run in one savepoint: one per operation, one for all the records."""
        units: list[tuple[list[_Job], Callable[[sqlite3.Connection], list[Any]]]] = []
        records: list[_Job] = []
        items: list[tuple[ReplayEntry, int]] = []
        for job in batch:
            if job.op is not None:
                units.append(([job], partial(_run_one, job.op)))
            else:
                assert job.replay is not None  # a job is an operation or a record
                records.append(job)
                items.append((job.replay, job.now_ms))
        if records:
            units.append((records, partial(record_many, items)))
        return units

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job], outcomes: list[Outcome]) -> bool:
        """Run the batch in as few transactions as possible (normally one), appending to ``outcomes`` what is
        settled (committed, or failed); False when the connection looks bad."""
        units = self._units(batch)
        healthy = True
        i = 0
        while i < len(units):
            try:
                self._locked(conn, "BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                err = unavailable(f"cannot begin a write on SQLite database {self.path}", exc)
                outcomes += [(job, None, err) for jobs, _ in units[i:] for job in jobs]
                return False
            done: list[tuple[_Job, Any]] = []
            while i < len(units):
                jobs, run = units[i]
                i += 1
                conn.execute("SAVEPOINT op")
                try:
                    results = run(conn)
                except Exception as exc:
                    failure = self._translate(exc)
                    outcomes += [(job, None, failure) for job in jobs]
                    if conn.in_transaction:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        continue
                    # SQLite rolled the whole transaction back (I/O error, disk full): earlier units are lost.
                    lost = unavailable(f"a write to SQLite database {self.path} was rolled back", exc)
                    outcomes += [(job, None, lost) for job, _ in done]
                    done = []
                    healthy = False
                    break
                conn.execute("RELEASE op")
                done += zip(jobs, results, strict=True)
            if not conn.in_transaction:
                continue
            if any(job.purges for job, _ in done):
                self._maybe_purge(conn)
            try:
                self._locked(conn, "COMMIT")
            except sqlite3.Error as exc:
                err = unavailable(f"cannot commit to SQLite database {self.path}", exc)
                outcomes += [(job, None, err) for job, _ in done]
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                healthy = False
            else:
                outcomes += [(job, result, None) for job, result in done]
                self.commits += 1
        return healthy

    def _maybe_purge(self, conn: sqlite3.Connection) -> None:
        """Delete a bounded batch of expired replay rows when one is due, in a transaction that records some."""
        if not self._purge.claim():
            return
        conn.execute("SAVEPOINT purge")
        try:
            deleted = conn.execute(_REPLAY_PURGE, (self._clock(), self._purge.batch)).rowcount
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO purge")
                conn.execute("RELEASE purge")
            return
        conn.execute("RELEASE purge")
        self._purge.done(deleted)

    def _reader_main(self) -> None:
        self._writer_opened.wait(timeout=self._busy_timeout_ms / 1000 + 5)
        conn: sqlite3.Connection | None = None
        stop = False
        while not stop:
            first = self._reads.get()
            if first is None:
                break
            batch, stop = self._take_batch(self._reads, first)
            outcomes: list[Outcome] = []
            for job in batch:
                try:
                    if conn is None:
                        conn = self._connect(writer=False)
                    assert job.op is not None  # reads always carry their operation
                    outcomes.append((job, job.op(conn), None))
                except Exception as exc:
                    outcomes.append((job, None, self._translate(exc)))
                    if conn is not None and isinstance(exc, sqlite3.Error):
                        conn.close()
                        conn = None
            _deliver(outcomes)
        if conn is not None:
            conn.close()

    def _translate(self, exc: Exception) -> BaseException:
        if isinstance(exc, errors.EhsmError | ValueError):
            return exc
        if isinstance(exc, sqlite3.IntegrityError):
            if exc.sqlite_errorname in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
                return RecordExists()
            err = errors.InternalError()
            err.add_note(f"constraint failed: {exc}")
            return err
        if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
            return exc  # a bug in this module, not the database's fault
        if isinstance(exc, sqlite3.Error):
            return unavailable(f"SQLite database {self.path}", exc)
        return exc

    # ---------------------------------------------------------------- life cycle
    async def migrate(self) -> None:
        migrations = load_migrations("sqlite")

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(Q.create_schema_version)
            current = conn.execute(Q.schema_version).fetchone()[0]
            if current > len(migrations):
                raise schema_too_new(current, len(migrations))
            for mig in migrations[current:]:
                for statement in _split_sql(mig.sql):
                    conn.execute(statement)
                conn.execute(Q.insert_schema_version, (mig.version, mig.name, self._clock()))

        await self._write(op)

    async def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
            if threads:
                self._writes.put(None)
                for _ in range(self._readers):
                    self._reads.put(None)
        if threads:
            await asyncio.to_thread(_join_all, threads)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT count(*) FROM sqlite_master").fetchone())
        if not self._threads[0].is_alive():
            raise unavailable(f"SQLite database {self.path}", RuntimeError("the writer thread is gone"))

    async def pragmas(self) -> dict[str, dict[str, Any]]:
        """The settings of the writer's and a reader's connection (for tests and diagnostics)."""

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "query_only")
            return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}

        return {"writer": await self._write(read), "reader": await self._read(read)}

    # ---------------------------------------------------------------- replay
    def _guarded(self, replay: ReplayEntry | None, op: Callable[[sqlite3.Connection], T]) -> Op:
        """``op`` preceded by the replay record, in the same savepoint: a replay raises and writes nothing."""
        if replay is None:
            return op
        params = (replay.appid, replay.digest, replay.expires_ms, self._clock())

        def guarded(conn: sqlite3.Connection) -> T:
            if conn.execute(Q.record_replay, params).rowcount != 1:
                raise ReplayDetected()
            return op(conn)

        return guarded

    async def record_request(self, entry: ReplayEntry, now_ms: int) -> bool:
        accepted: bool = await self._submit(self._writes, None, entry, now_ms)
        return accepted

    # ---------------------------------------------------------------- apps
    async def create_app(self, app: AppRecord, *, replay: ReplayEntry | None = None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(Q.insert_app, (app.appid, app.apikey_blob, app.created_ms, app.state))

        await self._write(self._guarded(replay, op))

    async def get_app(self, appid: str) -> AppRecord | None:
        def op(conn: sqlite3.Connection) -> AppRecord | None:
            row = conn.execute(Q.get_app, (appid,)).fetchone()
            return None if row is None else AppRecord(*row)

        return await self._read(op)

    async def list_apps(self) -> list[AppRecord]:
        def op(conn: sqlite3.Connection) -> list[AppRecord]:
            rows = conn.execute(Q.list_apps).fetchall()
            return [AppRecord(*row) for row in rows]

        return await self._read(op)

    async def update_app(
        self,
        appid: str,
        *,
        apikey_blob: bytes | None = None,
        state: str | None = None,
        replay: ReplayEntry | None = None,
    ) -> bool:
        changes: dict[str, object] = {}
        if apikey_blob is not None:
            changes["apikey_blob"] = apikey_blob
        if state is not None:
            changes["state"] = state
        assignments = ", ".join(f"{column} = ?" for column in changes) or "appid = appid"

        def op(conn: sqlite3.Connection) -> bool:
            sql = f"UPDATE apps SET {assignments} WHERE appid = ?"  # noqa: S608 (fixed column names only)
            return bool(conn.execute(sql, (*changes.values(), appid)).rowcount == 1)

        updated: bool = await self._write(self._guarded(replay, op))
        return updated

    # ---------------------------------------------------------------- keys
    async def create_key(self, key: KeyRecord, version: KeyVersionRecord, *, replay: ReplayEntry | None = None) -> None:
        check_new_key(key, version)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(Q.insert_key, key_row(key))
            conn.execute(Q.insert_version, version_row(version))

        await self._write(self._guarded(replay, op))

    async def get_key(self, keyid: str) -> tuple[KeyRecord, KeyVersionRecord] | None:
        def op(conn: sqlite3.Connection) -> tuple[KeyRecord, KeyVersionRecord] | None:
            row = conn.execute(Q.get_key, (keyid,)).fetchone()
            return None if row is None else key_with_primary(row)

        return await self._read(op)

    async def get_key_version(self, keyid: str, version: int) -> KeyVersionRecord | None:
        def op(conn: sqlite3.Connection) -> KeyVersionRecord | None:
            row = conn.execute(Q.get_version, (keyid, version)).fetchone()
            return None if row is None else KeyVersionRecord(*row)

        return await self._read(op)

    async def list_keys(self, appid: str) -> list[KeyRecord]:
        def op(conn: sqlite3.Connection) -> list[KeyRecord]:
            rows = conn.execute(Q.list_keys, (appid,)).fetchall()
            return [KeyRecord(*row) for row in rows]

        return await self._read(op)

    async def set_key_state(self, appid: str, keyid: str, state: int, *, replay: ReplayEntry | None = None) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute(Q.set_key_state, (state, keyid, appid)).rowcount == 1)

        updated: bool = await self._write(self._guarded(replay, op))
        return updated

    async def delete_key(self, appid: str, keyid: str, *, replay: ReplayEntry | None = None) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute(Q.delete_key, (keyid, appid)).rowcount == 1)

        deleted: bool = await self._write(self._guarded(replay, op))
        return deleted

    async def delete_all_keys(self, appid: str, *, replay: ReplayEntry | None = None) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return int(conn.execute(Q.delete_app_keys, (appid,)).rowcount)

        deleted: int = await self._write(self._guarded(replay, op))
        return deleted

    async def update_key_version_blob(
        self, keyid: str, version: int, blob: bytes, *, replay: ReplayEntry | None = None
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if conn.execute(Q.set_version_blob, (blob, keyid, version)).rowcount != 1:
                raise errors.KeyNotFound()

        await self._write(self._guarded(replay, op))

    async def count_keys(self) -> int:
        count: int = await self._read(lambda conn: conn.execute(Q.count_keys).fetchone()[0])
        return count

    async def bulk_create_keys(self, items: Sequence[tuple[KeyRecord, KeyVersionRecord]]) -> None:
        for key, version in items:
            check_new_key(key, version)

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(Q.insert_key, (key_row(key) for key, _ in items))
            conn.executemany(Q.insert_version, (version_row(version) for _, version in items))

        await self._write(op)

    # ---------------------------------------------------------------- BYOK import tokens
    async def put_import(self, rec: ImportRecord, *, replay: ReplayEntry | None = None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if conn.execute(Q.key_exists, (rec.keyid,)).fetchone() is None:
                raise errors.KeyNotFound()
            conn.execute(Q.put_import, import_row(rec))

        await self._write(self._guarded(replay, op))

    async def take_import(
        self, keyid: str, token_id: str, now_ms: int, *, replay: ReplayEntry | None = None
    ) -> ImportRecord | None:
        def op(conn: sqlite3.Connection) -> ImportRecord | None:
            # The writer thread is the only writer, so this read-then-delete is atomic.
            row = conn.execute(Q.get_import, (keyid,)).fetchone()
            if row is None or not token_matches(rec := ImportRecord(*row), token_id, now_ms):
                return None
            conn.execute(Q.delete_import, (keyid,))
            return rec

        taken: ImportRecord | None = await self._write(self._guarded(replay, op))
        return taken

    # ---------------------------------------------------------------- enrollment tokens
    async def put_enroll_token(self, digest: bytes, expires_ms: int) -> None:
        await self._write(lambda conn: conn.execute(Q.put_enroll_token, (digest, expires_ms)))

    async def take_enroll_token(self, digest: bytes, now_ms: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(Q.take_enroll_token, (digest,)).fetchone()
            return row is not None and now_ms < row[0]

        taken: bool = await self._write(op)
        return taken
