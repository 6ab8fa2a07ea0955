"""What only the PostgreSQL backend has: several nodes on one database, outages, the pool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ehsm_kms import errors
from ehsm_kms.storage import AppRecord, PostgresStore, ReplayEntry
from ehsm_kms.storage.base import load_migrations, wall_clock_ms
from tests.pg import PG_DSN
from tests.storage.conftest import entry, make_key

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@contextlib.asynccontextmanager
async def stores(schema: str, n: int, **options: object) -> AsyncIterator[list[PostgresStore]]:
    """``n`` stores (``n`` pools, like ``n`` nodes) on one schema."""
    opened = [PostgresStore(PG_DSN, schema=schema, **options) for _ in range(n)]  # type: ignore[arg-type]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


def rows(schema: str, query: sql.SQL | sql.Composed) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={schema}") as conn:
        return conn.execute(query).fetchall()


async def test_two_nodes_accept_a_request_once(pg_schema: str) -> None:
    async with stores(pg_schema, 2) as (a, b):
        await a.migrate()
        now = wall_clock_ms()
        for _ in range(10):
            same = entry()
            results = await asyncio.gather(*(store.record_request(same, now) for store in (a, b) * 8))
            assert results.count(True) == 1


async def test_a_write_on_one_node_burns_the_record_on_the_other(pg_schema: str) -> None:
    async with stores(pg_schema, 2) as (a, b):
        await a.migrate()
        record = entry()
        key, version = make_key()
        await a.create_key(key, version, replay=record)
        assert not await b.record_request(record, wall_clock_ms())
        assert await b.get_key(key.keyid) == (key, version)


async def test_nodes_migrating_at_once(pg_schema: str) -> None:
    async with stores(pg_schema, 4) as nodes:
        await asyncio.gather(*(node.migrate() for node in nodes))
        await asyncio.gather(*(node.migrate() for node in nodes))
        await nodes[0].create_app(AppRecord("app-a", b"blob", 1))
    applied = rows(pg_schema, sql.SQL("SELECT version FROM schema_version ORDER BY version"))
    assert [v for (v,) in applied] == [m.version for m in load_migrations("postgres")]


async def test_an_unreachable_server_fails_fast() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", timeout=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(errors.StoreUnavailable) as caught:
            await store.migrate()
        assert time.monotonic() - started < 5
        assert caught.value.message == "database error"
        assert any("127.0.0.1:1" in note for note in caught.value.__notes__)
    finally:
        await store.close()


class Proxy:
    """A TCP relay to the PostgreSQL server that a test can cut and restore, on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        target = psycopg.conninfo.conninfo_to_dict(PG_DSN)
        self._target = (str(target.get("host") or "127.0.0.1"), int(target.get("port") or 5432))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()
        self._tasks.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.transport.abort()
            self._writers.discard(dst)


async def test_the_store_recovers_when_the_server_comes_back(pg_schema: str) -> None:
    proxy = Proxy()
    await proxy.start()
    dsn = psycopg.conninfo.make_conninfo(PG_DSN, host="127.0.0.1", port=str(proxy.port))
    store = PostgresStore(dsn, schema=pg_schema, min_size=2, timeout=1.0, reconnect_timeout=5.0)
    try:
        await store.migrate()
        key, version = make_key()
        await store.create_key(key, version)

        await proxy.stop()  # the server goes away, with the pool's connections
        started = time.monotonic()
        with pytest.raises(errors.StoreUnavailable):
            await store.get_key(key.keyid)
        with pytest.raises(errors.StoreUnavailable):
            await store.record_request(entry(), wall_clock_ms())
        assert time.monotonic() - started < 6  # fails fast, does not hang

        await proxy.start()  # it comes back on the same address
        deadline = time.monotonic() + 20
        while True:
            try:
                found = await store.get_key(key.keyid)
                break
            except errors.StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not recover"
                await asyncio.sleep(0.2)
        assert found == (key, version)
        assert await store.record_request(entry(), wall_clock_ms())
    finally:
        await store.close()
        await proxy.stop()


async def test_expired_replay_rows_are_purged_in_bounded_batches(pg_schema: str) -> None:
    start = wall_clock_ms()
    live = ReplayEntry("app-a", os.urandom(32), start + 600_000)
    async with stores(pg_schema, 1, clock=lambda: start) as (store,):
        await store.migrate()
        old = [ReplayEntry("app-a", os.urandom(32), start + 1000) for _ in range(250)]
        assert all(await asyncio.gather(*(store.record_request(e, start) for e in old)))
        assert await store.record_request(live, start)
    later = start + 2000  # the old ones have expired
    left = []
    for _ in range(3):
        # The purge follows a flush, after its records are answered; close() waits for it.
        async with stores(pg_schema, 1, purge_batch=100, clock=lambda: later) as (store,):
            assert await store.record_request(entry(), later)
        query = sql.SQL("SELECT count(*) FROM replay WHERE expires_ms <= {}").format(later)
        left.append(rows(pg_schema, query)[0][0])
    assert left == [150, 50, 0]  # at most purge_batch rows at a time
    async with stores(pg_schema, 1) as (store,):
        assert not await store.record_request(live, later)  # the unexpired row stayed


def test_schema_names_are_checked() -> None:
    for bad in ("Upper", "with-dash", "semi;colon", "1starts_with_digit", "x" * 64):
        with pytest.raises(errors.ConfigError):
            PostgresStore(PG_DSN, schema=bad)


async def test_an_unmigrated_schema_is_a_database_error(pg_schema: str) -> None:
    async with stores(pg_schema, 1) as (store,):
        with pytest.raises(errors.StoreUnavailable) as caught:
            await store.get_app("app-a")
        assert any("UndefinedTable" in note for note in caught.value.__notes__)
