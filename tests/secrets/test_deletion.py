"""Due deletions under an injected clock, on SQLite and PostgreSQL, with the real ASGI app of each node.

* a secret pending deletion can be restored before its planned time; from that time on it is gone for every
  action (before any job ran), and the job removes its rows;
* two nodes running the job at once delete each due secret once (their counts add up to the due secrets), in
  batches, however many there are (the original's scan saw at most 25, section 12.2.3);
* a node that was down when secrets fell due deletes them when it comes back: the job looks at the store, not at
  timers kept in a process's memory (the original's were lost with the process, section 6.4).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ehsm_kms.service import secrets as secret_service
from ehsm_kms.storage.base import wall_clock_ms
from tests.secrets.conftest import Clock, LocalNode, Signed

pytestmark = pytest.mark.anyio

DAY = 86_400_000
JOB = "delete_due_secrets"


async def create(node: LocalNode, who: Signed, name: str, data: str = "v1") -> None:
    await node.ok(who, "CreateSecret", {"secretName": name, "secretData": data})


async def delete(node: LocalNode, who: Signed, name: str, days: int) -> None:
    out = await node.ok(who, "DeleteSecret", {"secretName": name, "recoveryPeriod": days})
    assert out["message"] == f"The {name} will be deleted after {days} days."


async def names(node: LocalNode, who: Signed) -> list[str]:
    out = await node.ok(who, "ListSecrets", {})
    return [row["secretName"] for row in out["result"]["secretList"]]


async def test_restorable_before_its_time_and_gone_after(url: str, tmp_path: Path) -> None:
    clock = Clock(wall_clock_ms())
    node = await LocalNode.start(url, tmp_path, clock)
    try:
        me = await node.enroll()
        await create(node, me, "s", "one")
        await node.ok(me, "PutSecretValue", {"secretName": "s", "secretData": "two"})
        t0 = clock.now
        await delete(node, me, "s", 7)

        clock.now = t0 + 7 * DAY - 1  # a millisecond before its time
        assert (await node.run_jobs())[JOB] == 0
        described = (await node.ok(me, "DescribeSecret", {"secretName": "s"}))["result"]
        assert described["plannedDeleteTime"] == t0 + 7 * DAY
        assert (await node.call(me, "GetSecretValue", {"secretName": "s"}))["message"] == "Can't find the s's value."
        assert (await node.ok(me, "RestoreSecret", {"secretName": "s"}))["message"] == "The s restore success."
        got = (await node.ok(me, "GetSecretValue", {"secretName": "s"}))["result"]
        assert (got["secretData"], got["versionId"]) == ("two", 2)

        t1 = clock.now
        await delete(node, me, "s", 1)
        clock.now = t1 + DAY  # due: gone for every action, before the job ran
        assert (await node.call(me, "RestoreSecret", {"secretName": "s"}))["message"] == (
            "Can not restore secret, the secretName not find."
        )
        assert (await node.ok(me, "DescribeSecret", {"secretName": "s"}))["result"] == {}
        assert await names(node, me) == []
        secret_id = await _secret_id(node, me.appid, "s", t1)
        assert len(await node.node.store.list_secret_versions(secret_id)) == 2  # its rows are still there

        assert (await node.run_jobs())[JOB] == 1
        assert await node.node.store.list_secret_versions(secret_id) == []
        purges = [r for r in await node.node.store.audit_records() if r.action == secret_service.PURGE_ACTION]
        assert [(r.appid, r.keyid, r.code, r.client) for r in purges] == [(me.appid, secret_id, 200, "scheduler")]
        assert (await node.run_jobs())[JOB] == 0
        await create(node, me, "s", "reborn")  # the name is free again
        got = (await node.ok(me, "GetSecretValue", {"secretName": "s"}))["result"]
        assert (got["secretData"], got["versionId"]) == ("reborn", 1)
    finally:
        await node.stop()


async def _secret_id(node: LocalNode, appid: str, name: str, when: int) -> str:
    rec = await node.node.store.get_secret(appid, name, when)
    assert rec is not None
    return rec.secret_id


async def test_two_nodes_delete_each_due_secret_once(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secret_service, "PURGE_BATCH", 4)  # many batches from few secrets
    clock = Clock(wall_clock_ms())
    a = await LocalNode.start(url, tmp_path, clock)
    b = await LocalNode.start(url, tmp_path, clock)  # the same store and domain key: another node
    try:
        apps = [await a.enroll(), await b.enroll()]
        t0 = clock.now
        due: set[str] = set()
        for i in range(45):
            who, node = apps[i % 2], (a, b)[i // 2 % 2]
            name = f"s{i}"
            await create(node, who, name)
            if i % 3:
                await node.ok(who, "PutSecretValue", {"secretName": name, "secretData": "v2"})
            if i % 9 == 0:
                continue  # never deleted
            days = 1 + i % 5
            await delete(node, who, name, days)
            if i % 9 == 4:
                await node.ok(who, "RestoreSecret", {"secretName": name})
            elif days <= 3:
                due.add(name)
        await delete(a, apps[0], "s36", 30)  # pending, not due

        clock.now = t0 + 3 * DAY
        counts = await asyncio.gather(a.run_jobs(), b.run_jobs(), a.run_jobs(), b.run_jobs())
        done = [c[JOB] for c in counts]
        assert sum(done) == len(due), done
        left = set(await names(a, apps[0])) | set(await names(b, apps[1]))
        assert left == {f"s{i}" for i in range(45)} - due
        assert [c[JOB] for c in await asyncio.gather(a.run_jobs(), b.run_jobs())] == [0, 0]

        clock.now = t0 + 31 * DAY  # the rest that was pending falls due too
        counts = await asyncio.gather(a.run_jobs(), b.run_jobs())
        pending = ({f"s{i}" for i in range(45) if i % 9 not in (0, 4)} - due) | {"s36"}
        assert sum(c[JOB] for c in counts) == len(pending)
        assert set(await names(a, apps[0])) | set(await names(b, apps[1])) == {f"s{i}" for i in range(45)} - (
            due | pending
        )
    finally:
        await b.stop()
        await a.stop()


async def test_a_node_that_was_down_deletes_due_secrets_when_it_comes_back(url: str, tmp_path: Path) -> None:
    clock = Clock(wall_clock_ms())
    first = await LocalNode.start(url, tmp_path, clock)
    try:
        me = await first.enroll()
        for name in ("gone", "kept"):
            await create(first, me, name)
        await delete(first, me, "gone", 1)
        secret_id = await _secret_id(first, me.appid, "gone", clock.now)
    finally:
        await first.stop()  # every node is down when the secret falls due

    clock.now += 5 * DAY
    back = await LocalNode.start(url, tmp_path, clock, scheduler_interval_s=3600.0)
    try:
        scheduler = back.app.scheduler
        assert scheduler is not None
        deadline = time.monotonic() + 10
        while scheduler.runs == 0 and time.monotonic() < deadline:  # it runs its jobs as it starts
            await asyncio.sleep(0.01)
        assert scheduler.runs >= 1
        assert await back.node.store.list_secret_versions(secret_id) == []
        assert await back.node.store.purge_due_secrets(clock.now, 10) == []
        assert await names(back, me) == ["kept"]
    finally:
        await back.stop()
