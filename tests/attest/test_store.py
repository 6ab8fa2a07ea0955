"""Quote policies in the store (migration 0005), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from ehsm_kms.storage import RecordExists, ReplayDetected, Store
from ehsm_kms.storage.quotes_base import QuotePolicyRecord
from tests.storage.conftest import entry

pytestmark = pytest.mark.anyio


def policy(appid: str = "app-a", mr_enclave: str = "ab" * 32, mr_signer: str = "cd" * 32) -> QuotePolicyRecord:
    return QuotePolicyRecord(str(uuid.uuid4()), appid, mr_enclave, mr_signer, 1_700_000_000_000)


async def test_put_and_get(store: Store) -> None:
    rec = policy()
    await store.put_quote_policy(rec)
    assert await store.get_quote_policy("app-a", rec.policy_id) == rec
    assert await store.get_quote_policy("app-a", str(uuid.uuid4())) is None


async def test_another_apps_policy_is_not_found(store: Store) -> None:
    rec = policy("app-a")
    await store.put_quote_policy(rec)
    assert await store.get_quote_policy("app-b", rec.policy_id) is None


async def test_values_come_back_exactly(store: Store) -> None:
    """The contract checks only the length: any 64 characters, NUL and non-ASCII included."""
    rec = policy(mr_enclave="\x00" * 32 + "é" * 32, mr_signer="X" * 64)
    await store.put_quote_policy(rec)
    assert await store.get_quote_policy("app-a", rec.policy_id) == rec


async def test_replay_writes_nothing(store: Store) -> None:
    replay = entry("app-a")
    first = policy()
    await store.put_quote_policy(first, replay=replay)
    second = policy()
    with pytest.raises(ReplayDetected):
        await store.put_quote_policy(second, replay=replay)
    assert await store.get_quote_policy("app-a", second.policy_id) is None


async def test_policy_ids_are_unique(store: Store) -> None:
    rec = policy()
    await store.put_quote_policy(rec)
    with pytest.raises(RecordExists):
        await store.put_quote_policy(rec)
