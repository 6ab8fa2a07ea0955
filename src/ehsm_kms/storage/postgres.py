"""The cluster store: PostgreSQL through a psycopg 3 async connection pool, shared by every KMS node.

Connections run in autocommit, so a one-statement write is one round trip and one commit; several statements
(a write with its replay record) run in an explicit transaction. The replay record is an
``INSERT ... ON CONFLICT`` against the (appid, digest) primary key, never a read-then-write, so two nodes that
receive the same request at once cannot both accept it.

A server that cannot be reached gives StoreUnavailable after ``timeout`` seconds at most; the pool keeps
trying to reconnect in the background, and after a connection breaks every idle connection is checked, so the
store recovers on its own once the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from ehsm_kms import errors
from ehsm_kms.storage.base import (
    QUERIES,
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
from ehsm_kms.storage.keyadmin_postgres import KeyAdminPostgres
from ehsm_kms.storage.quotes_postgres import PostgresQuotes
from ehsm_kms.storage.records import AppRecord, ImportRecord, KeyRecord, KeyVersionRecord, ReplayEntry
from ehsm_kms.storage.replay_postgres import record_many
from ehsm_kms.storage.rewrap_postgres import RewrapPostgres
from ehsm_kms.storage.secrets_postgres import PostgresSecrets

__all__ = ["PostgresStore"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]

Q: Final = QUERIES.with_placeholder("%s")
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_REPLAY_PURGE: Final = (
    "DELETE FROM replay WHERE (appid, digest) IN "
    "(SELECT appid, digest FROM replay WHERE expires_ms <= %s LIMIT %s FOR UPDATE SKIP LOCKED)"
)
# create_key as one statement (one round trip, atomic on its own): the key, its version and, when given, the
# replay record; for a replay the CTE chain inserts nothing and the statement reports no row.
_CREATE_KEY: Final = (
    "WITH key_row AS (INSERT INTO keys (keyid, appid, keyspec, usage, origin, state, creation_ms, expire_ms, "
    "alias, description, primary_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING keyid) "
    "INSERT INTO key_versions (keyid, version, blob, created_ms) SELECT keyid, %s, %s, %s FROM key_row"
)
_CREATE_KEY_GUARDED: Final = (
    "WITH replay_row AS (INSERT INTO replay (appid, digest, expires_ms) VALUES (%s, %s, %s) "
    "ON CONFLICT (appid, digest) DO UPDATE SET expires_ms = excluded.expires_ms "
    "WHERE replay.expires_ms <= %s RETURNING 1), "
    "key_row AS (INSERT INTO keys (keyid, appid, keyspec, usage, origin, state, creation_ms, expire_ms, alias, "
    "description, primary_version) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s "
    "WHERE EXISTS (SELECT 1 FROM replay_row) RETURNING keyid) "
    "INSERT INTO key_versions (keyid, version, blob, created_ms) SELECT keyid, %s, %s, %s FROM key_row"
)
_FLUSH_MAX: Final = 2000
_TAKE_IMPORT: Final = Q.get_import + " FOR UPDATE"
_COPY_KEYS: Final = (
    "COPY keys (keyid, appid, keyspec, usage, origin, state, creation_ms, expire_ms, alias, description, "
    "primary_version) FROM STDIN"
)
_COPY_VERSIONS: Final = "COPY key_versions (keyid, version, blob, created_ms) FROM STDIN"


class PostgresStore(PostgresSecrets, KeyAdminPostgres, PostgresQuotes, RewrapPostgres):
    """The Store protocol on PostgreSQL.

    ``schema``: the schema holding the tables (created by ``migrate()``); without it, the DSN's search_path
    decides. ``timeout``: seconds to wait for a connection before StoreUnavailable. ``min_size``/``max_size``:
    the pool. ``clock`` gives the time (ms) for ``replay=`` writes.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 3.0,
        reconnect_timeout: float = 10.0,
        purge_interval_s: float = 1.0,
        purge_batch: int = 10_000,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise errors.ConfigError("a PostgreSQL schema name is lower-case letters, digits and _ (max 63)")
        params = conninfo_to_dict(conninfo)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = max(2, math.ceil(timeout))
        if schema is not None:
            extra["options"] = f"{params.get('options') or ''} -c search_path={schema}".strip()
        # Named in notes on StoreUnavailable; never the password.
        host, port, dbname = (
            params.get("host") or "localhost",
            params.get("port") or 5432,
            params.get("dbname"),
        )
        self._where = f"PostgreSQL {host}:{port}/{dbname or ''}"
        self.schema = schema
        self._purge = PurgeSchedule(purge_interval_s, purge_batch)
        self._clock = clock or wall_clock_ms
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            make_conninfo(conninfo, **extra),
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True},
            timeout=timeout,
            reconnect_timeout=reconnect_timeout,
            name="ehsm-kms",
        )
        self._opened = False
        self._closed = False
        self._open_lock = asyncio.Lock()
        self._check_task: asyncio.Task[None] | None = None
        self._records: list[tuple[ReplayEntry, int, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r}, schema={self.schema!r})"

    # ---------------------------------------------------------------- connections
    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        if self._closed:
            raise unavailable(self._where, RuntimeError("the store is closed"))
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    await self._pool.open(wait=False)
                    self._opened = True
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.errors.UniqueViolation as exc:
            raise RecordExists() from exc
        except psycopg.IntegrityError as exc:
            err = errors.InternalError()
            err.add_note(f"constraint failed: {exc}")
            raise err from exc
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            # Connection trouble, and also what makes the database unusable to us (a missing table or
            # privilege): the caller gets "database error", the note on it says what happened.
            if isinstance(exc, psycopg.OperationalError):
                self._connection_lost()
            raise unavailable(self._where, exc) from exc

    def _connection_lost(self) -> None:
        """One connection broke, so others probably did too (server restart): check the idle ones now."""
        if self._check_task is None or self._check_task.done():
            self._check_task = asyncio.get_running_loop().create_task(self._check_pool())

    async def _check_pool(self) -> None:
        with contextlib.suppress(Exception):
            await self._pool.check()

    async def _read(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        """Run a read; once more on a fresh connection if the first one turned out to be broken."""
        try:
            async with self._connection() as conn:
                return await op(conn)
        except errors.StoreUnavailable as exc:
            if not isinstance(exc.__cause__, psycopg.OperationalError):
                raise
        async with self._connection() as conn:
            return await op(conn)

    async def _write(
        self, op: Callable[[Conn], Awaitable[T]], replay: ReplayEntry | None = None, *, single: bool = False
    ) -> T:
        """Run a write and commit it; with ``replay``, the replay record commits with it (or, for a replay,
        nothing does). ``single``: op is one statement, so autocommit is its transaction."""
        async with self._connection() as conn:
            if single and replay is None:
                return await op(conn)
            now_ms = self._clock()
            async with conn.transaction():
                if replay is not None and not await self._replay_accepted(conn, replay, now_ms):
                    raise ReplayDetected()
                return await op(conn)

    # ---------------------------------------------------------------- life cycle
    async def migrate(self) -> None:
        migrations = load_migrations("postgres")
        lock_id = int.from_bytes(
            hashlib.sha256(f"ehsm-kms migrate {self.schema}".encode()).digest()[:8], "big", signed=True
        )
        async with self._connection() as conn, conn.transaction():
            # Serializes concurrent migrations (two nodes starting at once); released at commit.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
            if self.schema is not None:
                await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            await conn.execute(Q.create_schema_version)
            cur = await conn.execute(Q.schema_version)
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            if current > len(migrations):
                raise schema_too_new(current, len(migrations))
            for mig in migrations[current:]:
                await conn.execute(mig.sql.encode())
                await conn.execute(Q.insert_schema_version, (mig.version, mig.name, self._clock()))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            await self._flusher  # answers every record already queued
        if self._check_task is not None:
            self._check_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._check_task
        await self._pool.close()

    async def ping(self) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute("SELECT 1", prepare=True)

        await self._read(op)

    # ---------------------------------------------------------------- replay
    async def _replay_accepted(self, conn: Conn, entry: ReplayEntry, now_ms: int) -> bool:
        params = (entry.appid, entry.digest, entry.expires_ms, now_ms)
        cur = await conn.execute(Q.record_replay, params, prepare=True)
        return cur.rowcount == 1

    async def record_request(self, entry: ReplayEntry, now_ms: int) -> bool:
        """Queued and sent with the other records waiting at that moment (one insert per flush)."""
        if self._closed:
            raise unavailable(self._where, RuntimeError("the store is closed"))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._records.append((entry, now_ms, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_records())
        return await future

    async def _flush_records(self) -> None:
        """Send queued records until none is left; records that arrive meanwhile wait for the next round."""
        while self._records:
            batch, self._records = self._records[:_FLUSH_MAX], self._records[_FLUSH_MAX:]
            try:
                async with self._connection() as conn:
                    results = await record_many(conn, [(entry, now_ms) for entry, now_ms, _ in batch])
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, _, future), accepted in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(accepted)
            await self._maybe_purge()

    async def _maybe_purge(self) -> None:
        """Delete a bounded batch of expired replay rows when one is due (skipping rows others are purging)."""
        if not self._purge.claim():
            return
        with contextlib.suppress(Exception):  # housekeeping: the next round tries again
            async with self._connection() as conn:
                cur = await conn.execute(_REPLAY_PURGE, (self._clock(), self._purge.batch), prepare=True)
                self._purge.done(cur.rowcount)

    # ---------------------------------------------------------------- apps
    async def create_app(self, app: AppRecord, *, replay: ReplayEntry | None = None) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(Q.insert_app, (app.appid, app.apikey_blob, app.created_ms, app.state))

        await self._write(op, replay, single=True)

    async def get_app(self, appid: str) -> AppRecord | None:
        async def op(conn: Conn) -> AppRecord | None:
            cur = await conn.execute(Q.get_app, (appid,), prepare=True)
            row = await cur.fetchone()
            return None if row is None else AppRecord(*row)

        return await self._read(op)

    async def list_apps(self) -> list[AppRecord]:
        async def op(conn: Conn) -> list[AppRecord]:
            cur = await conn.execute(Q.list_apps)
            return [AppRecord(*row) for row in await cur.fetchall()]

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
        assignments = [sql.SQL("{} = %s").format(sql.Identifier(column)) for column in changes]
        query = sql.SQL("UPDATE apps SET {} WHERE appid = %s").format(
            sql.SQL(", ").join(assignments) if assignments else sql.SQL("appid = appid")
        )

        async def op(conn: Conn) -> bool:
            cur = await conn.execute(query, (*changes.values(), appid))
            return cur.rowcount == 1

        return await self._write(op, replay, single=True)

    # ---------------------------------------------------------------- keys
    async def create_key(self, key: KeyRecord, version: KeyVersionRecord, *, replay: ReplayEntry | None = None) -> None:
        check_new_key(key, version)
        version_values = (version.version, version.blob, version.created_ms)
        async with self._connection() as conn:
            if replay is None:
                await conn.execute(_CREATE_KEY, (*key_row(key), *version_values), prepare=True)
                return
            guard = (replay.appid, replay.digest, replay.expires_ms, self._clock())
            cur = await conn.execute(_CREATE_KEY_GUARDED, (*guard, *key_row(key), *version_values), prepare=True)
            if cur.rowcount != 1:
                raise ReplayDetected()

    async def get_key(self, keyid: str) -> tuple[KeyRecord, KeyVersionRecord] | None:
        async def op(conn: Conn) -> tuple[KeyRecord, KeyVersionRecord] | None:
            cur = await conn.execute(Q.get_key, (keyid,), prepare=True)
            row = await cur.fetchone()
            return None if row is None else key_with_primary(row)

        return await self._read(op)

    async def get_key_version(self, keyid: str, version: int) -> KeyVersionRecord | None:
        async def op(conn: Conn) -> KeyVersionRecord | None:
            cur = await conn.execute(Q.get_version, (keyid, version), prepare=True)
            row = await cur.fetchone()
            return None if row is None else KeyVersionRecord(*row)

        return await self._read(op)

    async def list_keys(self, appid: str) -> list[KeyRecord]:
        async def op(conn: Conn) -> list[KeyRecord]:
            cur = await conn.execute(Q.list_keys, (appid,))
            return [KeyRecord(*row) for row in await cur.fetchall()]

        return await self._read(op)

    async def set_key_state(self, appid: str, keyid: str, state: int, *, replay: ReplayEntry | None = None) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute(Q.set_key_state, (state, keyid, appid), prepare=True)
            return cur.rowcount == 1

        return await self._write(op, replay, single=True)

    async def delete_key(self, appid: str, keyid: str, *, replay: ReplayEntry | None = None) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute(Q.delete_key, (keyid, appid))
            return cur.rowcount == 1

        return await self._write(op, replay, single=True)

    async def delete_all_keys(self, appid: str, *, replay: ReplayEntry | None = None) -> int:
        async def op(conn: Conn) -> int:
            cur = await conn.execute(Q.delete_app_keys, (appid,))
            return cur.rowcount

        return await self._write(op, replay, single=True)

    async def update_key_version_blob(
        self, keyid: str, version: int, blob: bytes, *, replay: ReplayEntry | None = None
    ) -> None:
        async def op(conn: Conn) -> None:
            cur = await conn.execute(Q.set_version_blob, (blob, keyid, version))
            if cur.rowcount != 1:
                raise errors.KeyNotFound()

        await self._write(op, replay, single=True)

    async def count_keys(self) -> int:
        async def op(conn: Conn) -> int:
            cur = await conn.execute(Q.count_keys)
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self._read(op)

    async def bulk_create_keys(self, items: Sequence[tuple[KeyRecord, KeyVersionRecord]]) -> None:
        for key, version in items:
            check_new_key(key, version)

        async def op(conn: Conn) -> None:
            async with conn.cursor() as cur:
                async with cur.copy(_COPY_KEYS) as copy:
                    for key, _ in items:
                        await copy.write_row(key_row(key))
                async with cur.copy(_COPY_VERSIONS) as copy:
                    for _, version in items:
                        await copy.write_row(version_row(version))

        await self._write(op)

    # ---------------------------------------------------------------- BYOK import tokens
    async def put_import(self, rec: ImportRecord, *, replay: ReplayEntry | None = None) -> None:
        async def op(conn: Conn) -> None:
            try:
                await conn.execute(Q.put_import, import_row(rec))
            except psycopg.errors.ForeignKeyViolation:
                raise errors.KeyNotFound() from None

        await self._write(op, replay, single=True)

    async def take_import(
        self, keyid: str, token_id: str, now_ms: int, *, replay: ReplayEntry | None = None
    ) -> ImportRecord | None:
        async def op(conn: Conn) -> ImportRecord | None:
            # The row lock makes concurrent takers wait; after the winner's commit they find no row.
            cur = await conn.execute(_TAKE_IMPORT, (keyid,))
            row = await cur.fetchone()
            if row is None or not token_matches(rec := ImportRecord(*row), token_id, now_ms):
                return None
            await conn.execute(Q.delete_import, (keyid,))
            return rec

        return await self._write(op, replay)

    # ---------------------------------------------------------------- enrollment tokens
    async def put_enroll_token(self, digest: bytes, expires_ms: int) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(Q.put_enroll_token, (digest, expires_ms))

        await self._write(op, single=True)

    async def take_enroll_token(self, digest: bytes, now_ms: int) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute(Q.take_enroll_token, (digest,))
            row = await cur.fetchone()
            return row is not None and now_ms < row[0]

        return await self._write(op, single=True)
