"""SQLite side of :class:`~ehsm_kms.storage.keyadmin_base.KeyAdminStore`, mixed into :class:`SqliteStore`.

Every write runs on the store's one writer thread, so a read followed by a write inside one operation is atomic
(no other writer can come between them, not even another process: the writer holds ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ehsm_kms import errors
from ehsm_kms.storage.audit_base import (
    AuditAppender,
    AuditEvent,
    AuditRecord,
    Replay,
    audit_row,
    chain,
    record_from_row,
    settle,
)
from ehsm_kms.storage.base import key_with_primary
from ehsm_kms.storage.keyadmin_base import KQ, AdminCredential
from ehsm_kms.storage.records import KeyRecord, KeyVersionRecord, ReplayEntry
from ehsm_kms.storage.replay_sqlite import record_many

T = TypeVar("T")

_DELETE_DUE: Final = f"DELETE FROM keys WHERE keyid IN ({KQ.due_deletions}) RETURNING keyid, appid"  # noqa: S608


def _alias_refused(conn: sqlite3.Connection, appid: str, keyid: str) -> errors.EhsmError:
    row = conn.execute(KQ.key_alias, (keyid, appid)).fetchone()
    return errors.KeyNotFound() if row is None else errors.KeyHasAlias()


def _set_alias(conn: sqlite3.Connection, appid: str, keyid: str, alias: str) -> None:
    try:
        changed = conn.execute(KQ.set_alias, (alias, keyid, appid)).rowcount
    except sqlite3.IntegrityError:
        raise errors.AliasExists() from None
    if changed != 1:
        raise _alias_refused(conn, appid, keyid)


class KeyAdminSqlite(AuditAppender):
    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, op: Callable[[sqlite3.Connection], T], *, purges: bool = False) -> T: ...

        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

        def _guarded(
            self, replay: ReplayEntry | None, op: Callable[[sqlite3.Connection], T]
        ) -> Callable[[sqlite3.Connection], Any]: ...

    async def _ka_update(self, sql: str, params: tuple[object, ...], replay: ReplayEntry | None) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute(sql, params).rowcount == 1)

        changed: bool = await self._write(self._guarded(replay, op))
        return changed

    # ---------------------------------------------------------------- versions and rotation
    async def list_key_versions(self, keyid: str) -> list[KeyVersionRecord]:
        def op(conn: sqlite3.Connection) -> list[KeyVersionRecord]:
            return [KeyVersionRecord(*row) for row in conn.execute(KQ.list_versions, (keyid,)).fetchall()]

        return await self._read(op)

    async def add_key_version(
        self,
        version: KeyVersionRecord,
        *,
        expected_primary: int,
        next_rotation: tuple[int, int] | None = None,
        replay: ReplayEntry | None = None,
    ) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            if next_rotation is None:
                params: tuple[object, ...] = (version.version, version.keyid, expected_primary)
                moved = conn.execute(KQ.bump_primary, params).rowcount
            else:
                expected_due, new_due = next_rotation
                params = (version.version, new_due, version.keyid, expected_primary, expected_due)
                moved = conn.execute(KQ.bump_primary_due, params).rowcount
            if moved != 1:
                return False
            conn.execute(KQ.insert_version, (version.keyid, version.version, version.blob, version.created_ms))
            return True

        added: bool = await self._write(self._guarded(replay, op))
        return added

    async def due_rotations(self, now_ms: int, limit: int) -> list[tuple[KeyRecord, KeyVersionRecord]]:
        def op(conn: sqlite3.Connection) -> list[tuple[KeyRecord, KeyVersionRecord]]:
            return [key_with_primary(row) for row in conn.execute(KQ.due_rotations, (now_ms, limit)).fetchall()]

        return await self._read(op)

    async def set_rotation(
        self, appid: str, keyid: str, period_ms: int, next_ms: int, *, replay: ReplayEntry | None = None
    ) -> bool:
        return await self._ka_update(KQ.set_rotation, (period_ms, next_ms, keyid, appid), replay)

    async def set_min_decrypt_version(
        self, appid: str, keyid: str, version: int, *, replay: ReplayEntry | None = None
    ) -> bool:
        return await self._ka_update(KQ.set_min_decrypt, (version, keyid, appid, version), replay)

    async def set_description(
        self, appid: str, keyid: str, description: str, *, replay: ReplayEntry | None = None
    ) -> bool:
        return await self._ka_update(KQ.set_description, (description, keyid, appid), replay)

    # ---------------------------------------------------------------- aliases
    async def get_key_by_alias(self, appid: str, alias: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(KQ.key_by_alias, (appid, alias)).fetchone()
            return None if row is None else str(row[0])

        return await self._read(op)

    async def set_alias(self, appid: str, keyid: str, alias: str, *, replay: ReplayEntry | None = None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            _set_alias(conn, appid, keyid, alias)

        await self._write(self._guarded(replay, op))

    async def move_alias(self, appid: str, alias: str, keyid: str, *, replay: ReplayEntry | None = None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            # Inside the operation's savepoint: an error below rolls the clearing back too.
            if conn.execute(KQ.clear_alias, (appid, alias)).rowcount != 1:
                raise errors.AliasNotFound()
            _set_alias(conn, appid, keyid, alias)

        await self._write(self._guarded(replay, op))

    async def clear_alias(self, appid: str, alias: str, *, replay: ReplayEntry | None = None) -> bool:
        return await self._ka_update(KQ.clear_alias, (appid, alias), replay)

    async def list_aliases(self, appid: str) -> list[tuple[str, str]]:
        def op(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return [(str(a), str(k)) for a, k in conn.execute(KQ.list_aliases, (appid,)).fetchall()]

        return await self._read(op)

    # ---------------------------------------------------------------- scheduled deletion
    async def schedule_key_deletion(
        self, appid: str, keyid: str, due_ms: int, *, replay: ReplayEntry | None = None
    ) -> bool:
        return await self._ka_update(KQ.schedule_deletion, (due_ms, keyid, appid), replay)

    async def cancel_key_deletion(self, appid: str, keyid: str, *, replay: ReplayEntry | None = None) -> bool:
        return await self._ka_update(KQ.cancel_deletion, (keyid, appid), replay)

    async def delete_due_keys(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        def op(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return [(str(k), str(a)) for k, a in conn.execute(_DELETE_DUE, (now_ms, limit)).fetchall()]

        return await self._write(op)

    async def due_key_deletions(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        def op(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return [(str(k), str(a)) for k, a in conn.execute(KQ.due_deletion_items, (now_ms, limit)).fetchall()]

        return await self._read(op)

    async def delete_key_if_due(self, keyid: str, now_ms: int) -> bool:
        return await self._ka_update(KQ.delete_if_due, (keyid, now_ms), None)

    # ---------------------------------------------------------------- audit log
    async def _append_audit_batch(
        self, events: list[AuditEvent], replays: list[Replay | None]
    ) -> tuple[list[AuditRecord], list[bool]]:
        pairs = [r for r in replays if r is not None]

        def op(conn: sqlite3.Connection) -> tuple[list[AuditRecord], list[bool]]:
            settled, accepted = settle(events, replays, record_many(pairs, conn) if pairs else [])
            head = conn.execute(KQ.audit_head).fetchone()
            if head is None:
                raise errors.InternalError("the audit log's head row is missing")
            records = chain(int(head[0]), bytes(head[1]), settled)
            conn.executemany(KQ.insert_audit, [audit_row(rec) for rec in records])
            conn.execute(KQ.set_audit_head, (records[-1].seq, records[-1].hash))
            return records, accepted

        return await self._write(op, purges=bool(pairs))

    async def audit_records(self, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        def op(conn: sqlite3.Connection) -> list[AuditRecord]:
            return [record_from_row(row) for row in conn.execute(KQ.audit_records, (after_seq, limit)).fetchall()]

        return await self._read(op)

    async def audit_head(self) -> tuple[int, bytes] | None:
        def op(conn: sqlite3.Connection) -> tuple[int, bytes] | None:
            row = conn.execute(KQ.audit_head).fetchone()
            return None if row is None else (int(row[0]), bytes(row[1]))

        return await self._read(op)

    # ---------------------------------------------------------------- the admin credential
    async def get_admin_credential(self) -> AdminCredential | None:
        def op(conn: sqlite3.Connection) -> AdminCredential | None:
            row = conn.execute(KQ.get_admin).fetchone()
            return None if row is None else AdminCredential(str(row[0]), bytes(row[1]), int(row[2]))

        return await self._read(op)

    async def put_admin_credential(self, cred: AdminCredential, *, replace: bool = False) -> bool:
        sql = KQ.replace_admin if replace else KQ.put_admin
        return await self._ka_update(sql, (cred.admin_id, cred.blob, cred.created_ms), None)
