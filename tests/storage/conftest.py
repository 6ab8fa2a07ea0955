"""One open, migrated store per test, on each backend (the contract suite runs against both)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ehsm_kms.storage import KeyRecord, KeyVersionRecord, ReplayEntry, Store, open_store
from ehsm_kms.storage.base import wall_clock_ms
from tests.pg import PG_DSN, pg_run, pg_schema  # noqa: F401 (fixtures)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'ehsm-kms.db'}"
    schema = request.getfixturevalue("pg_schema")
    return f"{PG_DSN}?schema={schema}&pool_max_size=20"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(store_url(request.param, request, tmp_path))
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


def make_key(
    appid: str = "app-a", *, keyid: str | None = None, created: int | None = None, blob: bytes = b"keyblob"
) -> tuple[KeyRecord, KeyVersionRecord]:
    now = wall_clock_ms() if created is None else created
    keyid = keyid or str(uuid.uuid4())
    key = KeyRecord(
        keyid=keyid,
        appid=appid,
        keyspec="EH_AES_GCM_256",
        usage="EH_KEYUSAGE_ENCRYPT_DECRYPT",
        origin="EH_INTERNAL_KEY",
        state=1,
        creation_ms=now,
        expire_ms=now + 365 * 86_400_000,
    )
    return key, KeyVersionRecord(keyid, 1, blob, now)


def entry(appid: str = "app-a", digest: bytes | None = None, ttl_ms: int = 600_000) -> ReplayEntry:
    return ReplayEntry(appid, digest or uuid.uuid4().bytes, wall_clock_ms() + ttl_ms)
