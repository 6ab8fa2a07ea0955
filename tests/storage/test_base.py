"""The pieces the backends share, and choosing a backend by URL (nothing here needs a database)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from ehsm_kms import errors
from ehsm_kms.storage import (
    AppRecord,
    ImportRecord,
    KeyVersionRecord,
    PostgresStore,
    ReplayEntry,
    SqliteStore,
    open_store,
)
from ehsm_kms.storage.base import QUERIES, PurgeSchedule, first_occurrences


def test_sqlite_urls() -> None:
    relative = open_store("sqlite:///data/ehsm-kms.db")
    assert isinstance(relative, SqliteStore) and relative.path == Path("data/ehsm-kms.db")
    absolute = open_store("sqlite:////var/lib/ehsm-kms/ehsm-kms.db")
    assert isinstance(absolute, SqliteStore) and absolute.path == Path("/var/lib/ehsm-kms/ehsm-kms.db")


def test_postgres_urls() -> None:
    store = open_store("postgresql://kms:secret@db.example:5433/kms?sslmode=require&schema=tenant_1&pool_max_size=4")
    assert isinstance(store, PostgresStore) and store.schema == "tenant_1"
    assert "secret" not in repr(store) and "db.example:5433/kms" in repr(store)
    assert isinstance(open_store("postgres://db.example/kms"), PostgresStore)


@pytest.mark.parametrize(
    "url",
    ["", "mysql://db/kms", "sqlite://", "sqlite:///", "sqlite:///:memory:", "postgresql://db/kms?pool_max_size=x"],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(errors.ConfigError):
        open_store(url)


def test_purge_schedule() -> None:
    schedule = PurgeSchedule(interval_s=3600, batch=100)
    assert schedule.claim()  # due at once after start
    assert not schedule.claim()  # then once per interval
    schedule.done(99)
    assert not schedule.claim()
    schedule.done(100)  # a full batch: more is waiting, so it is due again now
    assert schedule.claim()
    quick = PurgeSchedule(interval_s=0.01, batch=100)
    assert quick.claim() and not quick.claim()
    time.sleep(0.02)
    assert quick.claim()


def test_first_occurrences() -> None:
    a, b = ReplayEntry("app-a", b"1", 10), ReplayEntry("app-b", b"1", 10)
    assert first_occurrences([a, b, a, dataclasses.replace(a, expires_ms=99), b]) == [0, 1]
    assert first_occurrences([]) == []


def test_queries_for_another_placeholder() -> None:
    converted = QUERIES.with_placeholder("%s")
    assert "?" not in converted.record_replay
    assert converted.record_replay.count("%s") == QUERIES.record_replay.count("?") == 4


def test_reprs_show_no_blob_or_token() -> None:
    assert "sealed-apikey" not in repr(AppRecord("app-a", b"sealed-apikey", 1))
    assert "keyblob-bytes" not in repr(KeyVersionRecord("k", 1, b"keyblob-bytes", 1))
    rec = ImportRecord("k", "the-token", b"wrapping-bytes", "EH_RSA_3072", 1)
    assert "the-token" not in repr(rec) and "wrapping-bytes" not in repr(rec)
