"""Quote policies on PostgreSQL: a mixin of :class:`~ehsm_kms.storage.postgres.PostgresStore`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import psycopg
from psycopg.rows import TupleRow

from ehsm_kms.storage.quotes_base import QUOTE_QUERIES, QuotePolicyRecord, policy_from_row, policy_row
from ehsm_kms.storage.records import ReplayEntry

__all__ = ["PostgresQuotes"]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]
QQ: Final = QUOTE_QUERIES.with_placeholder("%s")


class PostgresQuotes:
    """The :class:`~ehsm_kms.storage.quotes_base.QuoteStore` methods, on the PostgresStore's pool."""

    if TYPE_CHECKING:  # provided by PostgresStore

        async def _read(self, op: Callable[[Conn], Awaitable[T]]) -> T: ...

        async def _write(
            self, op: Callable[[Conn], Awaitable[T]], replay: ReplayEntry | None = None, *, single: bool = False
        ) -> T: ...

    async def put_quote_policy(self, rec: QuotePolicyRecord, *, replay: ReplayEntry | None = None) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(QQ.insert, policy_row(rec))

        await self._write(op, replay, single=True)

    async def get_quote_policy(self, appid: str, policy_id: str) -> QuotePolicyRecord | None:
        async def op(conn: Conn) -> QuotePolicyRecord | None:
            cur = await conn.execute(QQ.get, (appid, policy_id), prepare=True)
            row = await cur.fetchone()
            return None if row is None else policy_from_row(row)

        return await self._read(op)
