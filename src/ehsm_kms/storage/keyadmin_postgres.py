"""PostgreSQL side of :class:`~ehsm_kms.storage.keyadmin_base.KeyAdminStore`, mixed into :class:`PostgresStore`.

Many nodes share the database, so every claim is a conditional statement or a row lock: a rotation's
``UPDATE ... WHERE primary_version = <read>`` (and ``next_rotation_ms = <read>``) inside the transaction that
inserts the version, a due deletion's ``DELETE ... FOR UPDATE SKIP LOCKED ... RETURNING``, the audit chain's
``SELECT ... FOR UPDATE`` of its head row (once per batch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import psycopg
from psycopg.rows import TupleRow

from ehsm_kms import errors
from ehsm_kms.storage.audit_base import (
    AUDIT_COLUMNS,
    AuditAppender,
    AuditEvent,
    AuditRecord,
    Replay,
    chain,
    record_from_row,
    settle,
)
from ehsm_kms.storage.base import key_with_primary
from ehsm_kms.storage.keyadmin_base import KQ, AdminCredential
from ehsm_kms.storage.records import KeyRecord, KeyVersionRecord, ReplayEntry
from ehsm_kms.storage.replay_postgres import record_many

T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]

Q: Final = KQ.with_placeholder("%s")
_DELETE_DUE: Final = (
    f"DELETE FROM keys WHERE keyid IN ({Q.due_deletions} FOR UPDATE SKIP LOCKED) RETURNING keyid, appid"  # noqa: S608
)
_LOCK_AUDIT_HEAD: Final = Q.audit_head + " FOR UPDATE"
# A batch of records goes in by COPY: of unnest arrays, executemany and COPY, the fastest (64 records: about 2 ms
# for the whole transaction, against 4 and 6 ms).
_COPY_AUDIT: Final = f"COPY audit ({AUDIT_COLUMNS}) FROM STDIN"


async def _alias_refused(conn: Conn, appid: str, keyid: str) -> errors.EhsmError:
    cur = await conn.execute(Q.key_alias, (keyid, appid))
    return errors.KeyNotFound() if await cur.fetchone() is None else errors.KeyHasAlias()


async def _set_alias(conn: Conn, appid: str, keyid: str, alias: str) -> None:
    try:
        async with conn.transaction():  # a savepoint: a unique violation leaves the outer transaction usable
            cur = await conn.execute(Q.set_alias, (alias, keyid, appid))
    except psycopg.errors.UniqueViolation:
        raise errors.AliasExists() from None
    if cur.rowcount != 1:
        raise await _alias_refused(conn, appid, keyid)


class KeyAdminPostgres(AuditAppender):
    if TYPE_CHECKING:  # provided by PostgresStore

        async def _read(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

        async def _write(
            self, op: Callable[[Conn], Awaitable[T]], replay: ReplayEntry | None = None, *, single: bool = False
        ) -> T: ...

        async def _maybe_purge(self) -> None: ...

    async def _ka_update(self, sql: str, params: tuple[object, ...], replay: ReplayEntry | None) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute(sql, params)
            return cur.rowcount == 1

        return await self._write(op, replay, single=True)

    # ---------------------------------------------------------------- versions and rotation
    async def list_key_versions(self, keyid: str) -> list[KeyVersionRecord]:
        async def op(conn: Conn) -> list[KeyVersionRecord]:
            cur = await conn.execute(Q.list_versions, (keyid,))
            return [KeyVersionRecord(k, v, bytes(b), c) for k, v, b, c in await cur.fetchall()]

        return await self._read(op)

    async def add_key_version(
        self,
        version: KeyVersionRecord,
        *,
        expected_primary: int,
        next_rotation: tuple[int, int] | None = None,
        replay: ReplayEntry | None = None,
    ) -> bool:
        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                if next_rotation is None:
                    params: tuple[object, ...] = (version.version, version.keyid, expected_primary)
                    cur = await conn.execute(Q.bump_primary, params)
                else:
                    expected_due, new_due = next_rotation
                    params = (version.version, new_due, version.keyid, expected_primary, expected_due)
                    cur = await conn.execute(Q.bump_primary_due, params)
                if cur.rowcount != 1:
                    return False
                await conn.execute(Q.insert_version, (version.keyid, version.version, version.blob, version.created_ms))
                return True

        return await self._write(op, replay)

    async def due_rotations(self, now_ms: int, limit: int) -> list[tuple[KeyRecord, KeyVersionRecord]]:
        async def op(conn: Conn) -> list[tuple[KeyRecord, KeyVersionRecord]]:
            cur = await conn.execute(Q.due_rotations, (now_ms, limit))
            return [key_with_primary(row) for row in await cur.fetchall()]

        return await self._read(op)

    async def set_rotation(
        self, appid: str, keyid: str, period_ms: int, next_ms: int, *, replay: ReplayEntry | None = None
    ) -> bool:
        return await self._ka_update(Q.set_rotation, (period_ms, next_ms, keyid, appid), replay)

    async def set_min_decrypt_version(
        self, appid: str, keyid: str, version: int, *, replay: ReplayEntry | None = None
    ) -> bool:
        return await self._ka_update(Q.set_min_decrypt, (version, keyid, appid, version), replay)

    async def set_description(
        self, appid: str, keyid: str, description: str, *, replay: ReplayEntry | None = None
    ) -> bool:
        return await self._ka_update(Q.set_description, (description, keyid, appid), replay)

    # ---------------------------------------------------------------- aliases
    async def get_key_by_alias(self, appid: str, alias: str) -> str | None:
        async def op(conn: Conn) -> str | None:
            cur = await conn.execute(Q.key_by_alias, (appid, alias), prepare=True)
            row = await cur.fetchone()
            return None if row is None else str(row[0])

        return await self._read(op)

    async def set_alias(self, appid: str, keyid: str, alias: str, *, replay: ReplayEntry | None = None) -> None:
        async def op(conn: Conn) -> None:
            await _set_alias(conn, appid, keyid, alias)

        await self._write(op, replay)

    async def move_alias(self, appid: str, alias: str, keyid: str, *, replay: ReplayEntry | None = None) -> None:
        async def op(conn: Conn) -> None:
            # _write runs this in a transaction: an error below rolls the clearing back too.
            cur = await conn.execute(Q.clear_alias, (appid, alias))
            if cur.rowcount != 1:
                raise errors.AliasNotFound()
            await _set_alias(conn, appid, keyid, alias)

        await self._write(op, replay)

    async def clear_alias(self, appid: str, alias: str, *, replay: ReplayEntry | None = None) -> bool:
        return await self._ka_update(Q.clear_alias, (appid, alias), replay)

    async def list_aliases(self, appid: str) -> list[tuple[str, str]]:
        async def op(conn: Conn) -> list[tuple[str, str]]:
            cur = await conn.execute(Q.list_aliases, (appid,))
            return [(str(a), str(k)) for a, k in await cur.fetchall()]

        return await self._read(op)

    # ---------------------------------------------------------------- scheduled deletion
    async def schedule_key_deletion(
        self, appid: str, keyid: str, due_ms: int, *, replay: ReplayEntry | None = None
    ) -> bool:
        return await self._ka_update(Q.schedule_deletion, (due_ms, keyid, appid), replay)

    async def cancel_key_deletion(self, appid: str, keyid: str, *, replay: ReplayEntry | None = None) -> bool:
        return await self._ka_update(Q.cancel_deletion, (keyid, appid), replay)

    async def delete_due_keys(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        async def op(conn: Conn) -> list[tuple[str, str]]:
            cur = await conn.execute(_DELETE_DUE, (now_ms, limit))
            return [(str(k), str(a)) for k, a in await cur.fetchall()]

        return await self._write(op, single=True)

    async def due_key_deletions(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        async def op(conn: Conn) -> list[tuple[str, str]]:
            cur = await conn.execute(Q.due_deletion_items, (now_ms, limit))
            return [(str(k), str(a)) for k, a in await cur.fetchall()]

        return await self._read(op)

    async def delete_key_if_due(self, keyid: str, now_ms: int) -> bool:
        return await self._ka_update(Q.delete_if_due, (keyid, now_ms), None)

    # ---------------------------------------------------------------- audit log
    async def _append_audit_batch(
        self, events: list[AuditEvent], replays: list[Replay | None]
    ) -> tuple[list[AuditRecord], list[bool]]:
        pairs = [r for r in replays if r is not None]

        async def op(conn: Conn) -> tuple[list[AuditRecord], list[bool]]:
            async with conn.transaction():
                settled, accepted = settle(events, replays, await record_many(conn, pairs) if pairs else [])
                cur = await conn.execute(_LOCK_AUDIT_HEAD, prepare=True)
                head = await cur.fetchone()
                if head is None:
                    raise errors.InternalError("the audit log's head row is missing")
                records = chain(int(head[0]), bytes(head[1]), settled)
                async with conn.cursor() as cur, cur.copy(_COPY_AUDIT) as copy:
                    for rec in records:
                        await copy.write_row(rec)
                await conn.execute(Q.set_audit_head, (records[-1].seq, records[-1].hash), prepare=True)
                return records, accepted

        written = await self._write(op)
        if pairs:
            await self._maybe_purge()
        return written

    async def audit_records(self, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        async def op(conn: Conn) -> list[AuditRecord]:
            cur = await conn.execute(Q.audit_records, (after_seq, limit))
            return [record_from_row(row) for row in await cur.fetchall()]

        return await self._read(op)

    async def audit_head(self) -> tuple[int, bytes] | None:
        async def op(conn: Conn) -> tuple[int, bytes] | None:
            cur = await conn.execute(Q.audit_head)
            row = await cur.fetchone()
            return None if row is None else (int(row[0]), bytes(row[1]))

        return await self._read(op)

    # ---------------------------------------------------------------- the admin credential
    async def get_admin_credential(self) -> AdminCredential | None:
        async def op(conn: Conn) -> AdminCredential | None:
            cur = await conn.execute(Q.get_admin)
            row = await cur.fetchone()
            return None if row is None else AdminCredential(str(row[0]), bytes(row[1]), int(row[2]))

        return await self._read(op)

    async def put_admin_credential(self, cred: AdminCredential, *, replace: bool = False) -> bool:
        sql = Q.replace_admin if replace else Q.put_admin
        return await self._ka_update(sql, (cred.admin_id, cred.blob, cred.created_ms), None)
