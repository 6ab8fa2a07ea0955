"""Replay records on SQLite in bulk: what the writer thread runs for a batch of requests' records, alone or in the
transaction of the audit records they travel with (:mod:`ehsm_kms.storage.keyadmin_sqlite`)."""

from __future__ import annotations

import sqlite3
from functools import cache
from typing import Final

from ehsm_kms.storage.base import QUERIES as Q
from ehsm_kms.storage.base import first_occurrences
from ehsm_kms.storage.records import ReplayEntry

_CHUNK: Final = 500  # rows per statement: 3 parameters each, far below SQLite's limit


@cache
def _insert_many_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?)"] * rows)
    return (
        f"INSERT INTO replay (appid, digest, expires_ms) VALUES {values} "  # noqa: S608 (placeholders only)
        "ON CONFLICT (appid, digest) DO NOTHING RETURNING appid, digest"
    )


def record_many(items: list[tuple[ReplayEntry, int]], conn: sqlite3.Connection) -> list[bool]:
    """Record (entry, now_ms) pairs: one insert per chunk for all of them, then an update for each conflict
    (a replay, or an expired entry taken over); True for each one accepted."""
    entries = [entry for entry, _ in items]
    firsts = first_occurrences(entries)
    inserted: set[tuple[str, bytes]] = set()
    for start in range(0, len(firsts), _CHUNK):
        chunk = [entries[i] for i in firsts[start : start + _CHUNK]]
        params = [value for e in chunk for value in (e.appid, e.digest, e.expires_ms)]
        inserted.update(conn.execute(_insert_many_sql(len(chunk)), params).fetchall())
    results = [False] * len(items)
    for i in firsts:
        entry, now_ms = items[i]
        if (entry.appid, entry.digest) in inserted:
            results[i] = True
        else:
            take_over = (entry.expires_ms, entry.appid, entry.digest, now_ms)
            results[i] = conn.execute(Q.take_over_replay, take_over).rowcount == 1
    return results
