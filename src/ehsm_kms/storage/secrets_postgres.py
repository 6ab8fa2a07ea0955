"""The secret manager on PostgreSQL: a mixin of :class:`~ehsm_kms.storage.postgres.PostgresStore`.

Many nodes write at once here, so every change that must be atomic is one statement (autocommit makes it one
transaction): a new version is the compare-and-swap ``WITH retired AS (UPDATE ... RETURNING) INSERT ...``, and
the deletion job is ``DELETE ... WHERE secret_id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``, so two
nodes purging at the same moment take disjoint secrets and each due secret is deleted once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import psycopg
from psycopg.rows import TupleRow

from ehsm_kms.storage.base import RecordExists
from ehsm_kms.storage.records import ReplayEntry
from ehsm_kms.storage.secrets_base import (
    SECRET_QUERIES,
    PurgedSecret,
    SecretRecord,
    SecretVersionInfo,
    SecretVersionRecord,
    check_new_secret,
    secret_from_row,
    secret_row,
    text_bytes,
)

__all__ = ["PostgresSecrets"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]
SQ: Final = SECRET_QUERIES.with_placeholder("%s")

# The secret and its version 1 in one statement.
_CREATE: Final = (
    "WITH made AS (INSERT INTO secrets (secret_id, appid, name, created_ms, encryption_key_id, description, "
    "deleted_ms, planned_delete_ms, rotation_interval, next_rotation_ms) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING secret_id) "
    "INSERT INTO secret_versions (secret_id, version, ciphertext, created_ms, is_current) "
    "SELECT secret_id, 1, %s, %s, TRUE FROM made"
)
# The compare-and-swap of a new version. Of two nodes that both try to retire version n-1, the second waits for
# the first's row lock, then finds that row no longer current and inserts nothing.
_PUT_VERSION: Final = (
    f"WITH retired AS ({SQ.retire_current} RETURNING secret_id) "  # noqa: S608 (fixed statements only)
    "INSERT INTO secret_versions (secret_id, version, ciphertext, created_ms, is_current) "
    "SELECT secret_id, %s, %s, %s, TRUE FROM retired"
)
_PURGE_DUE: Final = (
    "DELETE FROM secrets WHERE secret_id IN (SELECT secret_id FROM secrets WHERE planned_delete_ms <= %s "
    "ORDER BY planned_delete_ms, secret_id LIMIT %s FOR UPDATE SKIP LOCKED) "
    "RETURNING secret_id, appid, planned_delete_ms"
)
_PUT_KEY: Final = SQ.put_key + " RETURNING blob"


class PostgresSecrets:
    """The :class:`~ehsm_kms.storage.secrets_base.SecretStore` methods, on the PostgresStore's pool."""

    if TYPE_CHECKING:  # provided by PostgresStore

        async def _read(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

        async def _write(
            self, op: Callable[[Conn], Awaitable[T]], replay: ReplayEntry | None = None, *, single: bool = False
        ) -> T: ...

    async def create_secret(self, secret: SecretRecord, first: SecretVersionRecord) -> None:
        check_new_secret(secret, first)
        params = (*secret_row(secret), first.ciphertext, first.created_ms)
        drop = (secret.appid, text_bytes(secret.name), secret.created_ms)

        async def op(conn: Conn) -> None:
            try:
                await conn.execute(_CREATE, params, prepare=True)
                return
            except psycopg.errors.UniqueViolation:
                # The name is taken; by a secret that is gone (its deletion is due) it may be used again.
                cur = await conn.execute(SQ.drop_due_named, drop)
                if cur.rowcount == 0:
                    raise RecordExists() from None
            await conn.execute(_CREATE, params, prepare=True)

        await self._write(op, single=True)

    async def get_secret(self, appid: str, name: str, now_ms: int) -> SecretRecord | None:
        async def op(conn: Conn) -> SecretRecord | None:
            cur = await conn.execute(SQ.get_secret, (appid, now_ms, text_bytes(name)), prepare=True)
            row = await cur.fetchone()
            return None if row is None else secret_from_row(row)

        return await self._read(op)

    async def list_secrets(self, appid: str, now_ms: int, name: str | None = None) -> list[SecretRecord]:
        async def op(conn: Conn) -> list[SecretRecord]:
            if name is None:
                cur = await conn.execute(SQ.list_secrets, (appid, now_ms))
            else:
                cur = await conn.execute(SQ.list_secrets_named, (appid, now_ms, text_bytes(name)))
            return [secret_from_row(row) for row in await cur.fetchall()]

        return await self._read(op)

    async def update_secret_description(self, appid: str, name: str, description: str | None) -> bool:
        value = None if description is None else text_bytes(description)
        return await self._changed_one(SQ.update_description, (value, appid, text_bytes(name)))

    async def put_secret_version(self, version: SecretVersionRecord) -> bool:
        params = (
            version.secret_id,
            version.version - 1,
            version.secret_id,
            version.version,
            version.ciphertext,
            version.created_ms,
        )

        async def op(conn: Conn) -> bool:
            try:
                cur = await conn.execute(_PUT_VERSION, params, prepare=True)
            except psycopg.errors.UniqueViolation:  # a backstop: the compare-and-swap lets none through
                return False
            except psycopg.errors.ForeignKeyViolation:  # the secret was deleted meanwhile
                return False
            return cur.rowcount == 1

        return await self._write(op, single=True)

    async def get_secret_version(self, secret_id: str, version: int | None = None) -> SecretVersionRecord | None:
        async def op(conn: Conn) -> SecretVersionRecord | None:
            if version is None:
                cur = await conn.execute(SQ.get_current, (secret_id,), prepare=True)
            else:
                cur = await conn.execute(SQ.get_version, (secret_id, version), prepare=True)
            row = await cur.fetchone()
            return None if row is None else SecretVersionRecord(*row)

        return await self._read(op)

    async def list_secret_versions(self, secret_id: str) -> list[SecretVersionInfo]:
        async def op(conn: Conn) -> list[SecretVersionInfo]:
            cur = await conn.execute(SQ.list_versions, (secret_id,))
            return [SecretVersionInfo(*row) for row in await cur.fetchall()]

        return await self._read(op)

    async def schedule_secret_deletion(self, appid: str, name: str, deleted_ms: int, planned_delete_ms: int) -> bool:
        params = (deleted_ms, planned_delete_ms, appid, text_bytes(name), deleted_ms)
        return await self._changed_one(SQ.schedule_deletion, params)

    async def restore_secret(self, appid: str, name: str, now_ms: int) -> bool:
        return await self._changed_one(SQ.restore, (appid, text_bytes(name), now_ms))

    async def delete_secret(self, appid: str, name: str, now_ms: int) -> bool:
        return await self._changed_one(SQ.delete, (appid, text_bytes(name), now_ms))

    async def _changed_one(self, statement: str, params: tuple[object, ...]) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute(statement, params, prepare=True)
            return cur.rowcount == 1

        return await self._write(op, single=True)

    async def purge_due_secrets(self, now_ms: int, limit: int) -> list[PurgedSecret]:
        async def op(conn: Conn) -> list[PurgedSecret]:
            cur = await conn.execute(_PURGE_DUE, (now_ms, limit), prepare=True)
            return [PurgedSecret(*row) for row in await cur.fetchall()]

        return await self._write(op, single=True)

    async def get_secret_key(self, appid: str) -> bytes | None:
        async def op(conn: Conn) -> bytes | None:
            cur = await conn.execute(SQ.get_key, (appid,), prepare=True)
            row = await cur.fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(op)

    async def put_secret_key(self, appid: str, blob: bytes, created_ms: int) -> bytes:
        async def op(conn: Conn) -> bytes:
            cur = await conn.execute(_PUT_KEY, (appid, blob, created_ms), prepare=True)
            row = await cur.fetchone()
            if row is None:  # the app has one already (perhaps made by another node a moment ago)
                cur = await conn.execute(SQ.get_key, (appid,), prepare=True)
                row = await cur.fetchone()
            if row is None:
                raise RecordExists()  # pragma: no cover - the row the insert conflicted with is committed
            return bytes(row[0])

        return await self._write(op, single=True)
