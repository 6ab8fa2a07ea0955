"""The store side, with two nodes' store handles on one database (two writers, as two processes or machines):
the audit chain stays one unbroken chain under concurrent appends, an alias name is taken once however many
race for it, and moving an alias is all or nothing."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import uuid

import pytest

from ehsm_kms import errors
from ehsm_kms.service import audit_chain
from ehsm_kms.service.node import Node
from ehsm_kms.storage.audit_base import GENESIS, AuditEvent, chain, record_hash
from ehsm_kms.storage.records import KeyRecord, KeyVersionRecord

pytestmark = pytest.mark.anyio


def event(i: int, who: str) -> AuditEvent:
    return AuditEvent(time_ms=1_700_000_000_000 + i, appid=who, action="Encrypt", keyid=str(uuid.uuid4()),
                      key_version=1, code=200, request_id=f"{who}-{i}", client="127.0.0.1:1")  # fmt: skip


async def test_concurrent_appends_make_one_unbroken_chain(node_pair: tuple[Node, Node]) -> None:
    a, b = node_pair
    assert await a.store.audit_head() == (0, GENESIS)
    appends = [
        store.append_audit(event(i, name)) for i in range(150) for name, store in (("a", a.store), ("b", b.store))
    ]
    written = await asyncio.gather(*appends)
    assert sorted(r.seq for r in written) == list(range(1, 301))  # every record got its own place
    report = await audit_chain.verify_store(b.store)
    assert report.intact and report.records == 300, report.breaks
    assert await a.store.audit_head() == (300, report.last_hash)
    # Odd text (NUL, a lone surrogate, very long) is stored as it can be, and the chain still verifies.
    await a.store.append_audit(AuditEvent(1, "x\x00y", "\ud800" * 3, "k" * 10_000))
    assert (await audit_chain.verify_store(a.store)).intact


async def _key(node: Node, appid: str) -> str:
    keyid = str(uuid.uuid4())
    now = node.clock_ms()
    rec = KeyRecord(keyid, appid, "EH_AES_GCM_256", "EH_KEYUSAGE_ENCRYPT_DECRYPT", "EH_INTERNAL_KEY", 1, now, now + 1)
    await node.store.create_key(rec, KeyVersionRecord(keyid, 1, b"blob", now))
    return keyid


async def test_an_alias_is_taken_once_and_moved_all_or_nothing(node_pair: tuple[Node, Node]) -> None:
    a, b = node_pair
    keys = [await _key(a, "app-1") for _ in range(8)]
    outcomes = await asyncio.gather(
        *(node.store.set_alias("app-1", k, "payments") for k, node in zip(keys, [a, b] * 4, strict=True)),
        return_exceptions=True,
    )
    winners = [k for k, out in zip(keys, outcomes, strict=True) if out is None]
    assert len(winners) == 1
    assert all(isinstance(out, errors.AliasExists) for out in outcomes if out is not None)
    assert await b.store.get_key_by_alias("app-1", "payments") == winners[0]
    # Other apps have names of their own.
    theirs = await _key(b, "app-2")
    await b.store.set_alias("app-2", theirs, "payments")
    assert await a.store.list_aliases("app-2") == [("payments", theirs)]

    # A move to a key that already has an alias changes nothing; a move to a free key moves it.
    loser = next(k for k in keys if k != winners[0])
    await a.store.set_alias("app-1", loser, "billing")
    with pytest.raises(errors.KeyHasAlias):
        await a.store.move_alias("app-1", "payments", loser)
    assert await a.store.get_key_by_alias("app-1", "payments") == winners[0]
    free = next(k for k in keys if k not in (winners[0], loser))
    await b.store.move_alias("app-1", "payments", free)
    assert await a.store.list_aliases("app-1") == [("billing", loser), ("payments", free)]
    with pytest.raises(errors.AliasNotFound):
        await a.store.move_alias("app-1", "nothing", free)
    with pytest.raises(errors.KeyNotFound):
        await a.store.move_alias("app-1", "payments", theirs)  # another app's key
    assert await a.store.clear_alias("app-1", "payments")
    assert not await a.store.clear_alias("app-1", "payments")


def test_the_record_hash_is_the_documented_encoding() -> None:
    """storage/audit_base.py's docstring, written out independently: a change of encoding breaks old logs."""
    ev = AuditEvent(1_700_000_000_123, "app-é", "Decrypt", "k-1", 3, 400, "sign error", "req-1", "10.0.0.1:5")

    def text(value: str) -> bytes:
        data = value.encode()
        return struct.pack(">I", len(data)) + data

    prev = bytes(range(32))
    expected = hashlib.sha256(
        b"ehsm-kms audit v1"
        + struct.pack(">Q", 7)
        + prev
        + struct.pack(">q", ev.time_ms)
        + text(ev.appid)
        + text(ev.action)
        + text(ev.keyid)
        + struct.pack(">qq", ev.key_version, ev.code)
        + text(ev.message)
        + text(ev.request_id)
        + text(ev.client)
    ).digest()
    assert record_hash(7, prev, ev) == expected
    first = chain(0, GENESIS, [ev])[0]
    assert (first.seq, first.prev_hash, first.hash) == (1, GENESIS, record_hash(1, GENESIS, ev))
