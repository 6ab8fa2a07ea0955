"""The online rewrap's store methods on SQLite: a mixin of :class:`~ehsm_kms.storage.sqlite.SqliteStore`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from ehsm_kms.storage.rewrap_base import (
    BLOB_KINDS,
    WrappedBlob,
    blob_from_row,
    dk_version_bytes,
    queries_of,
    rewrap_queries,
)

__all__ = ["RewrapSqlite"]

T = TypeVar("T")
RQ: Final = rewrap_queries("substr({}, 6, 4)", "length({})")


class RewrapSqlite:
    """The :class:`~ehsm_kms.storage.rewrap_base.RewrapStore` methods, on the SqliteStore's threads."""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    async def stale_blobs(
        self, kind: str, dk_version: int, after: tuple[str, int] | None, limit: int
    ) -> list[WrappedBlob]:
        q, version = queries_of(RQ, kind), dk_version_bytes(dk_version)

        def op(conn: sqlite3.Connection) -> list[WrappedBlob]:
            if after is None:
                rows = conn.execute(q.select_first, (version, limit)).fetchall()
            else:
                rows = conn.execute(q.select, (version, *q.cursor_params(after), limit)).fetchall()
            return [blob_from_row(kind, row) for row in rows]

        return await self._read(op)

    async def count_stale_blobs(self, dk_version: int) -> dict[str, int]:
        version = dk_version_bytes(dk_version)

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            return {kind: int(conn.execute(RQ[kind].count, (version,)).fetchone()[0]) for kind in BLOB_KINDS}

        return await self._read(op)

    async def replace_blobs(self, kind: str, changes: Sequence[tuple[WrappedBlob, bytes]]) -> int:
        q = queries_of(RQ, kind)
        if not changes:
            return 0

        def op(conn: sqlite3.Connection) -> int:
            return sum(conn.execute(q.update, q.update_params(row, new)).rowcount for row, new in changes)

        return await self._write(op)
