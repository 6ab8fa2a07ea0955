"""Quote policies on SQLite: a mixin of :class:`~ehsm_kms.storage.sqlite.SqliteStore`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ehsm_kms.storage.quotes_base import QUOTE_QUERIES, QuotePolicyRecord, policy_from_row, policy_row
from ehsm_kms.storage.records import ReplayEntry

__all__ = ["SqliteQuotes"]

T = TypeVar("T")
QQ: Final = QUOTE_QUERIES


class SqliteQuotes:
    """The :class:`~ehsm_kms.storage.quotes_base.QuoteStore` methods, on the SqliteStore's threads."""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

        def _guarded(
            self, replay: ReplayEntry | None, op: Callable[[sqlite3.Connection], T]
        ) -> Callable[[sqlite3.Connection], Any]: ...

    async def put_quote_policy(self, rec: QuotePolicyRecord, *, replay: ReplayEntry | None = None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(QQ.insert, policy_row(rec))

        await self._write(self._guarded(replay, op))

    async def get_quote_policy(self, appid: str, policy_id: str) -> QuotePolicyRecord | None:
        def op(conn: sqlite3.Connection) -> QuotePolicyRecord | None:
            row = conn.execute(QQ.get, (appid, policy_id)).fetchone()
            return None if row is None else policy_from_row(row)

        return await self._read(op)
