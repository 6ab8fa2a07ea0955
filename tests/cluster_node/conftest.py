"""Fixtures of the node-side cluster tests: the stand-in dkeycache, stores on SQLite and PostgreSQL, nodes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ehsm_kms.config import Settings
from ehsm_kms.core.protocol import SignedRequest
from ehsm_kms.service.all_actions import HANDLERS
from ehsm_kms.service.node import Node
from tests.cluster_node.standin import StandInCache
from tests.pg import PG_DSN, pg_run, pg_schema  # noqa: F401
from tests.signing import signed

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
ADMIN_ID = re.compile(r"admin id:\s+(admin-[0-9a-f-]{36})")
ADMIN_KEY = re.compile(r"admin key:\s+(\S{32})")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cache() -> Iterator[StandInCache]:
    made = StandInCache().start()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'ehsm-kms.db'}"
    return f"{PG_DSN}?schema={request.getfixturevalue('pg_schema')}"


def cluster_settings(tmp_path: Path, name: str, store_url: str, cache: StandInCache, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / name),
        "store_url": store_url,
        "run_mode": "cluster",
        "dkeycache_socket": cache.socket_path,
        "core_mode": "inprocess",
        "dk_refresh_interval_ms": 600_000,  # tests that want the periodic refresh say so
        "scheduler_interval_ms": 0,
    }
    values.update(kw)
    return Settings(**values).validate()


class Caller:
    """An enrolled app calling one node's service handlers directly, with requests signed by the contract's rule."""

    def __init__(self, node: Node, appid: str, apikey: str) -> None:
        self.node, self.appid, self.apikey = node, appid, apikey

    def on(self, node: Node) -> Caller:
        return Caller(node, self.appid, self.apikey)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        req: SignedRequest = signed(self.appid, self.apikey, payload)
        outcome = await HANDLERS[action](self.node, req, payload)
        return outcome.result


def admin_credential(text: str) -> tuple[str, str]:
    """The admin id and key a node printed at its first start."""
    found_id, found_key = ADMIN_ID.search(text), ADMIN_KEY.search(text)
    assert found_id and found_key, text[-2000:]
    return found_id.group(1), found_key.group(1)
