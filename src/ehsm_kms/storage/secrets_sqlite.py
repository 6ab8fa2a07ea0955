"""The secret manager on SQLite: a mixin of :class:`~ehsm_kms.storage.sqlite.SqliteStore`.

Every write runs as one operation of the store's single writer thread (inside its own savepoint of a group
commit), so each method below is atomic; the constraints of ``0003_secrets`` hold even for writers in other
processes, whose transactions SQLite serializes (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeVar

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

__all__ = ["SqliteSecrets"]

T = TypeVar("T")
SQ: Final = SECRET_QUERIES

_PURGE_DUE: Final = (
    "DELETE FROM secrets WHERE secret_id IN (SELECT secret_id FROM secrets WHERE planned_delete_ms <= ? "
    "ORDER BY planned_delete_ms, secret_id LIMIT ?) RETURNING secret_id, appid, planned_delete_ms"
)


class SqliteSecrets:
    """The :class:`~ehsm_kms.storage.secrets_base.SecretStore` methods, on the SqliteStore's threads."""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    async def create_secret(self, secret: SecretRecord, first: SecretVersionRecord) -> None:
        check_new_secret(secret, first)
        name = text_bytes(secret.name)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(SQ.drop_due_named, (secret.appid, name, secret.created_ms))
            conn.execute(SQ.insert_secret, secret_row(secret))
            conn.execute(SQ.insert_current_version, (first.secret_id, 1, first.ciphertext, first.created_ms))

        await self._write(op)

    async def get_secret(self, appid: str, name: str, now_ms: int) -> SecretRecord | None:
        def op(conn: sqlite3.Connection) -> SecretRecord | None:
            row = conn.execute(SQ.get_secret, (appid, now_ms, text_bytes(name))).fetchone()
            return None if row is None else secret_from_row(row)

        return await self._read(op)

    async def list_secrets(self, appid: str, now_ms: int, name: str | None = None) -> list[SecretRecord]:
        def op(conn: sqlite3.Connection) -> list[SecretRecord]:
            if name is None:
                rows = conn.execute(SQ.list_secrets, (appid, now_ms)).fetchall()
            else:
                rows = conn.execute(SQ.list_secrets_named, (appid, now_ms, text_bytes(name))).fetchall()
            return [secret_from_row(row) for row in rows]

        return await self._read(op)

    async def update_secret_description(self, appid: str, name: str, description: str | None) -> bool:
        value = None if description is None else text_bytes(description)

        def op(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute(SQ.update_description, (value, appid, text_bytes(name))).rowcount == 1)

        updated: bool = await self._write(op)
        return updated

    async def put_secret_version(self, version: SecretVersionRecord) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            retire = (version.secret_id, version.version - 1, version.secret_id)
            if conn.execute(SQ.retire_current, retire).rowcount != 1:
                return False
            added = (version.secret_id, version.version, version.ciphertext, version.created_ms)
            conn.execute(SQ.insert_current_version, added)
            return True

        added: bool = await self._write(op)
        return added

    async def get_secret_version(self, secret_id: str, version: int | None = None) -> SecretVersionRecord | None:
        def op(conn: sqlite3.Connection) -> SecretVersionRecord | None:
            if version is None:
                row = conn.execute(SQ.get_current, (secret_id,)).fetchone()
            else:
                row = conn.execute(SQ.get_version, (secret_id, version)).fetchone()
            return None if row is None else SecretVersionRecord(*row)

        return await self._read(op)

    async def list_secret_versions(self, secret_id: str) -> list[SecretVersionInfo]:
        def op(conn: sqlite3.Connection) -> list[SecretVersionInfo]:
            return [SecretVersionInfo(*row) for row in conn.execute(SQ.list_versions, (secret_id,)).fetchall()]

        return await self._read(op)

    async def schedule_secret_deletion(self, appid: str, name: str, deleted_ms: int, planned_delete_ms: int) -> bool:
        params = (deleted_ms, planned_delete_ms, appid, text_bytes(name), deleted_ms)
        return await self._changed_one(SQ.schedule_deletion, params)

    async def restore_secret(self, appid: str, name: str, now_ms: int) -> bool:
        return await self._changed_one(SQ.restore, (appid, text_bytes(name), now_ms))

    async def delete_secret(self, appid: str, name: str, now_ms: int) -> bool:
        return await self._changed_one(SQ.delete, (appid, text_bytes(name), now_ms))

    async def _changed_one(self, statement: str, params: tuple[object, ...]) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute(statement, params).rowcount == 1)

        changed: bool = await self._write(op)
        return changed

    async def purge_due_secrets(self, now_ms: int, limit: int) -> list[PurgedSecret]:
        def op(conn: sqlite3.Connection) -> list[PurgedSecret]:
            # Versions go with their secret (ON DELETE CASCADE).
            return [PurgedSecret(*row) for row in conn.execute(_PURGE_DUE, (now_ms, limit)).fetchall()]

        return await self._write(op)

    async def get_secret_key(self, appid: str) -> bytes | None:
        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(SQ.get_key, (appid,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(op)

    async def put_secret_key(self, appid: str, blob: bytes, created_ms: int) -> bytes:
        def op(conn: sqlite3.Connection) -> bytes:
            conn.execute(SQ.put_key, (appid, blob, created_ms))
            return bytes(conn.execute(SQ.get_key, (appid,)).fetchone()[0])

        return await self._write(op)
