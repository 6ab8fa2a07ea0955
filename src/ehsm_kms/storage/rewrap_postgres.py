"""The online rewrap's store methods on PostgreSQL: a mixin of :class:`~ehsm_kms.storage.postgres.PostgresStore`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

import psycopg
from psycopg.rows import TupleRow

from ehsm_kms.storage.records import ReplayEntry
from ehsm_kms.storage.rewrap_base import (
    BLOB_KINDS,
    WrappedBlob,
    blob_from_row,
    dk_version_bytes,
    queries_of,
    rewrap_queries,
)

__all__ = ["RewrapPostgres"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]
RQ: Final = {
    kind: q.with_placeholder("%s")
    for kind, q in rewrap_queries("substring({} from 6 for 4)", "octet_length({})").items()
}


class RewrapPostgres:
    """The :class:`~ehsm_kms.storage.rewrap_base.RewrapStore` methods, on the PostgresStore's pool."""

    if TYPE_CHECKING:  # provided by PostgresStore

        async def _read(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

        async def _write(
            self, op: Callable[[Conn], Awaitable[T]], replay: ReplayEntry | None = None, *, single: bool = False
        ) -> T: ...

    async def stale_blobs(
        self, kind: str, dk_version: int, after: tuple[str, int] | None, limit: int
    ) -> list[WrappedBlob]:
        q, version = queries_of(RQ, kind), dk_version_bytes(dk_version)

        async def op(conn: Conn) -> list[WrappedBlob]:
            if after is None:
                cur = await conn.execute(q.select_first, (version, limit))
            else:
                cur = await conn.execute(q.select, (version, *q.cursor_params(after), limit))
            return [blob_from_row(kind, row) for row in await cur.fetchall()]

        return await self._read(op)

    async def count_stale_blobs(self, dk_version: int) -> dict[str, int]:
        version = dk_version_bytes(dk_version)

        async def op(conn: Conn) -> dict[str, int]:
            counts: dict[str, int] = {}
            for kind in BLOB_KINDS:
                cur = await conn.execute(RQ[kind].count, (version,))
                row = await cur.fetchone()
                counts[kind] = int(row[0]) if row else 0
            return counts

        return await self._read(op)

    async def replace_blobs(self, kind: str, changes: Sequence[tuple[WrappedBlob, bytes]]) -> int:
        q = queries_of(RQ, kind)
        if not changes:
            return 0

        async def op(conn: Conn) -> int:
            updated = 0
            for row, new in changes:
                cur = await conn.execute(q.update, q.update_params(row, new))
                updated += cur.rowcount
            return updated

        return await self._write(op)
