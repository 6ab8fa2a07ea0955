"""The scheduler's jobs on two nodes of one store, with an injected clock (``Scheduler(node).run_once(now_ms)``):
automatic rotation happens once per key and period in the whole cluster, a rotation that fails half-way leaves
the key as it was, and a due key is deleted exactly once."""

from __future__ import annotations

import asyncio
import base64

import pytest

from ehsm_kms import errors
from ehsm_kms.service.node import Node
from ehsm_kms.service.scheduler import Scheduler
from tests.beyond.conftest import DAY_MS, Caller, enrolled, refusing_inserts, url_of

pytestmark = pytest.mark.anyio

AES = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}
MARGIN_MS = 60_000  # more than the test takes between reading the clock and the last UpdateKeyRotation


async def run_everywhere(nodes: tuple[Node, ...], now_ms: int, job: str, rounds: int = 2) -> int:
    """Every node runs its scheduler ``rounds`` times at the same moment; how many items the job did in all."""
    runs = [Scheduler(node).run_once(now_ms) for _ in range(rounds) for node in nodes]
    return sum(done[job] for done in await asyncio.gather(*runs))


async def versions(node: Node, keyid: str) -> list[int]:
    return [v.version for v in await node.store.list_key_versions(keyid)]


def version_of(ciphertext: str) -> int:
    return int.from_bytes(base64.b64decode(ciphertext)[1:5], "big")


async def test_two_nodes_never_rotate_a_key_twice_in_one_period(node_pair: tuple[Node, Node]) -> None:
    a, b = node_pair
    app = await enrolled(a)
    start = a.clock_ms()
    keys = [(await app.call("CreateKey", AES))["keyid"] for _ in range(12)]
    old = {k: (await app.call("Encrypt", {"keyid": k, "plaintext": "b2xk"}))["ciphertext"] for k in keys}
    for k in keys:
        await app.call("UpdateKeyRotation", {"keyid": k, "rotationPeriod": 1})

    assert await run_everywhere(node_pair, start + DAY_MS - MARGIN_MS, "rotate_keys") == 0  # not due yet
    first = start + DAY_MS + MARGIN_MS
    assert await run_everywhere(node_pair, first, "rotate_keys", rounds=3) == len(keys)
    assert await run_everywhere(node_pair, first + 1000, "rotate_keys") == 0  # the same period: nothing
    for k in keys:
        assert await versions(b, k) == [1, 2]
    assert await run_everywhere(node_pair, first + DAY_MS, "rotate_keys") == len(keys)  # the next period
    other = app.on(b)
    for k in keys:
        assert await versions(a, k) == [1, 2, 3]
        new = (await other.call("Encrypt", {"keyid": k, "plaintext": "bmV3"}))["ciphertext"]
        assert version_of(new) == 3
        assert (await other.call("Decrypt", {"keyid": k, "ciphertext": old[k]}))["plaintext"] == "b2xk"
    # Each rotation left one audit record, written by the node that did it.
    records = await a.store.audit_records(0, 10_000)
    rotations = [(r.keyid, r.key_version) for r in records if r.action == "AutoRotateKey"]
    assert sorted(rotations) == sorted((k, v) for k in keys for v in (2, 3))


async def test_a_rotation_that_fails_half_way_leaves_the_key_usable(node_pair: tuple[Node, Node]) -> None:
    a, b = node_pair
    app = await enrolled(a)
    start = a.clock_ms()
    keyid = (await app.call("CreateKey", AES))["keyid"]
    await app.call("UpdateKeyRotation", {"keyid": keyid, "rotationPeriod": 7})
    due = start + 7 * DAY_MS + MARGIN_MS
    # The version row cannot be written: the transaction that also moved the primary is rolled back.
    with refusing_inserts(url_of(a.store), "key_versions"):
        assert await run_everywhere(node_pair, due, "rotate_keys") == 0
    assert await versions(a, keyid) == [1]
    found = await a.store.get_key(keyid)
    assert found is not None and found[0].primary_version == 1
    made = await app.call("Encrypt", {"keyid": keyid, "plaintext": "c3RpbGw="})
    assert version_of(made["ciphertext"]) == 1
    # Still due: the next run of any node rotates it, once.
    assert await run_everywhere(node_pair, due, "rotate_keys") == 1
    assert await versions(b, keyid) == [1, 2]
    assert (await app.on(b).call("Decrypt", {"keyid": keyid, "ciphertext": made["ciphertext"]}))["plaintext"] == (
        "c3RpbGw="
    )


async def test_pending_keys_refuse_use_cancel_restores_and_due_keys_are_deleted_once(
    node_pair: tuple[Node, Node],
) -> None:
    a, b = node_pair
    app = await enrolled(a)
    start = a.clock_ms()
    keys = [(await app.call("CreateKey", AES))["keyid"] for _ in range(9)]
    ciphertext = (await app.call("Encrypt", {"keyid": keys[0], "plaintext": "eA=="}))["ciphertext"]
    await app.call("DisableKey", {"keyid": keys[1]})
    for k in keys[:8]:
        made = await app.call("ScheduleKeyDeletion", {"keyid": k, "pendingWindowInDays": 7})
        assert made["keyState"] == 2 and made["deletionDate"] >= start + 7 * DAY_MS
    with pytest.raises(errors.KeyPendingDeletion):
        await app.call("Encrypt", {"keyid": keys[0], "plaintext": "eA=="})
    with pytest.raises(errors.KeyPendingDeletion):
        await app.on(b).call("Decrypt", {"keyid": keys[0], "ciphertext": ciphertext})
    with pytest.raises(errors.KeyPendingDeletion):
        await app.call("ScheduleKeyDeletion", {"keyid": keys[0]})
    # Cancelled: back as it was, enabled or disabled.
    assert (await app.call("CancelKeyDeletion", {"keyid": keys[0]}))["keyState"] == 1
    assert (await app.call("CancelKeyDeletion", {"keyid": keys[1]}))["keyState"] == 0
    assert (await app.call("Decrypt", {"keyid": keys[0], "ciphertext": ciphertext}))["plaintext"] == "eA=="
    with pytest.raises(errors.KeyNotPendingDeletion):
        await app.call("CancelKeyDeletion", {"keyid": keys[8]})

    assert await run_everywhere(node_pair, start + 7 * DAY_MS - MARGIN_MS, "delete_due_keys") == 0
    due = start + 7 * DAY_MS + MARGIN_MS
    assert await run_everywhere(node_pair, due, "delete_due_keys", rounds=3) == 6
    left = {k.keyid for k in await a.store.list_keys(app.appid)}
    assert left == {keys[0], keys[1], keys[8]}
    for k in keys[2:8]:
        assert await a.store.get_key(k) is None
        assert await a.store.list_key_versions(k) == []
    records = await b.store.audit_records(0, 10_000)
    assert sorted(r.keyid for r in records if r.action == "ScheduledKeyDeletion") == sorted(keys[2:8])


async def test_delete_key_keeps_its_meaning_for_a_pending_key(node_pair: tuple[Node, Node]) -> None:
    a, _ = node_pair
    app: Caller = await enrolled(a)
    keyid = (await app.call("CreateKey", AES))["keyid"]
    await app.call("ScheduleKeyDeletion", {"keyid": keyid})
    found = await a.store.get_key(keyid)
    assert found is not None and found[0].deletion_due_ms >= a.clock_ms() + 29 * DAY_MS  # 30 days by default
    await app.call("DeleteKey", {"keyid": keyid})
    assert await a.store.get_key(keyid) is None
