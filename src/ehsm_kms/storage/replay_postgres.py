"""Replay records on PostgreSQL in bulk: one statement for a batch of requests' records, on its own (autocommit)
or inside the transaction of the audit records they travel with (:mod:`ehsm_kms.storage.keyadmin_postgres`)."""

from __future__ import annotations

from typing import Final

import psycopg
from psycopg.rows import TupleRow

from ehsm_kms.storage.base import first_occurrences
from ehsm_kms.storage.records import ReplayEntry

Conn = psycopg.AsyncConnection[TupleRow]

# A batch of records is one insert (three arrays, prepared once); the rows that conflicted then take over an
# expired entry with one update, each row compared with its own caller's now.
_INSERT_MANY: Final = (
    "INSERT INTO replay (appid, digest, expires_ms) "
    "SELECT * FROM unnest(%s::text[], %s::bytea[], %s::bigint[]) "
    "ON CONFLICT (appid, digest) DO NOTHING RETURNING appid, digest"
)
_TAKE_OVER_MANY: Final = (
    "UPDATE replay r SET expires_ms = t.expires_ms "
    "FROM unnest(%s::text[], %s::bytea[], %s::bigint[], %s::bigint[]) AS t(appid, digest, expires_ms, now_ms) "
    "WHERE r.appid = t.appid AND r.digest = t.digest AND r.expires_ms <= t.now_ms RETURNING r.appid, r.digest"
)


async def record_many(conn: Conn, items: list[tuple[ReplayEntry, int]]) -> list[bool]:
    """Record (entry, now_ms) pairs; True for each one accepted (a later duplicate in the batch is a replay)."""
    entries = [entry for entry, _ in items]
    firsts = first_occurrences(entries)
    unique = [entries[i] for i in firsts]
    columns = ([e.appid for e in unique], [e.digest for e in unique], [e.expires_ms for e in unique])
    cur = await conn.execute(_INSERT_MANY, columns, prepare=True)
    accepted = set(await cur.fetchall())
    conflicts = [i for i in firsts if (entries[i].appid, entries[i].digest) not in accepted]
    if conflicts:
        rows = [items[i] for i in conflicts]
        params = (
            [e.appid for e, _ in rows],
            [e.digest for e, _ in rows],
            [e.expires_ms for e, _ in rows],
            [now_ms for _, now_ms in rows],
        )
        cur = await conn.execute(_TAKE_OVER_MANY, params, prepare=True)
        accepted.update(await cur.fetchall())
    results = [False] * len(items)
    for i in firsts:
        results[i] = (entries[i].appid, entries[i].digest) in accepted
    return results
