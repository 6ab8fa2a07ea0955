"""``audit_fail_closed`` beyond requests: the scheduler's jobs and the ``ehsm-kms admin`` commands on the node write
their request record before they change anything, and change nothing while it cannot be written.

The store refuses the audit writes for real, with the triggers of test_audit_fail_closed.py (imported). Jobs run on
in-process nodes with the scheduler's injected clock (``Scheduler(node, ...).run_once(now_ms)``, nothing sleeps);
the admin commands run in-process through click's CliRunner against the same kind of store and domain key. What
changed is read from the database directly, never through the service.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ehsm_kms import errors
from ehsm_kms.cli.main import main
from ehsm_kms.config import Settings
from ehsm_kms.server.assemble import build_node
from ehsm_kms.service import admin, apps, audit_chain
from ehsm_kms.service.node import Node
from ehsm_kms.service.scheduler import Scheduler
from ehsm_kms.storage.audit_base import REQUEST_CODE, AuditRecord, ChainReport
from tests.beyond.conftest import (
    ADMIN_ID,
    ADMIN_KEY,
    BACKENDS,
    DAY_MS,
    PASSPHRASE,
    Caller,
    database,
    enrolled,
    refusing_inserts,
    store_url,
    url_of,
)
from tests.beyond.test_audit_fail_closed import refusing_outcomes
from tests.beyond.test_jobs import AES, MARGIN_MS

LEFT = "not written before it ran; left for the next run"


# ------------------------------------------------------------------------------------------ the store, directly
def stored_versions(url: str, keyid: str) -> list[int]:
    with database(url) as run:
        return [int(v) for (v,) in run("SELECT version FROM key_versions WHERE keyid = ? ORDER BY version", (keyid,))]


def stored_key(url: str, keyid: str) -> tuple[Any, ...] | None:
    """The key's row as the jobs change it (primary version, next rotation, deletion due), None once deleted."""
    with database(url) as run:
        rows = run("SELECT primary_version, next_rotation_ms, deletion_due_ms FROM keys WHERE keyid = ?", (keyid,))
    return tuple(rows[0]) if rows else None


def audit_count(url: str) -> int:
    with database(url) as run:
        return int(run("SELECT count(*) FROM audit")[0][0])


async def records_of(node: Node, keyid: str) -> list[AuditRecord]:
    return [r for r in await node.store.audit_records(0, 100_000) if r.keyid == keyid]


async def assert_paired(node: Node) -> None:
    """The chain is whole and every request record has its outcome."""
    report = await audit_chain.verify_store(node.store)
    assert report.intact, report.breaks
    assert report.dangling == [], audit_chain.dangling_lines(report)


# ------------------------------------------------------------------------------------------ automatic rotation
@pytest.mark.anyio
async def test_fail_closed_a_due_rotation_waits_for_its_request_record(
    node_pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = node_pair
    url = url_of(a.store)
    app = await enrolled(a)
    start = a.clock_ms()
    keyid = (await app.call("CreateKey", AES))["keyid"]
    await app.call("UpdateKeyRotation", {"keyid": keyid, "rotationPeriod": 1})
    before = stored_key(url, keyid)
    due = start + DAY_MS + MARGIN_MS
    scheduler = Scheduler(a, audit_fail_closed=True)

    with refusing_inserts(url, "audit"):
        for _ in range(2):  # not rotated, and not half-rotated: still due at every run
            assert (await scheduler.run_once(due))["rotate_keys"] == 0
            assert stored_versions(url, keyid) == [1]
            assert stored_key(url, keyid) == before
    assert f"audit record of job AutoRotateKey for key {keyid} {LEFT}" in caplog.text
    assert app.apikey not in caplog.text
    assert await records_of(a, keyid) == []

    # The audit log writes again: the next run rotates it, between its two records.
    assert (await scheduler.run_once(due))["rotate_keys"] == 1
    assert stored_versions(url, keyid) == [1, 2]
    ahead, outcome = await records_of(a, keyid)
    assert (ahead.action, ahead.code, ahead.key_version, ahead.appid, ahead.client) == (
        "AutoRotateKey", REQUEST_CODE, 2, app.appid, "scheduler"
    )  # fmt: skip
    assert (outcome.code, outcome.key_version, outcome.request_id) == (200, 2, ahead.request_id)
    assert ahead.seq < outcome.seq
    await assert_paired(a)
    assert (await scheduler.run_once(due + 1000))["rotate_keys"] == 0  # the period is done


@pytest.mark.anyio
async def test_fail_closed_the_rotation_goes_ahead_when_only_its_outcome_cannot_be_written(
    node_pair: tuple[Node, Node],
) -> None:
    a, _ = node_pair
    url = url_of(a.store)
    app = await enrolled(a)
    start = a.clock_ms()
    keyid = (await app.call("CreateKey", AES))["keyid"]
    await app.call("UpdateKeyRotation", {"keyid": keyid, "rotationPeriod": 1})
    with refusing_outcomes(url):
        assert (await Scheduler(a, audit_fail_closed=True).run_once(start + DAY_MS + MARGIN_MS))["rotate_keys"] == 1
    assert stored_versions(url, keyid) == [1, 2]  # done after its request record, and not undone
    [ahead] = await records_of(a, keyid)
    assert ahead.code == REQUEST_CODE
    report = await audit_chain.verify_store(a.store)
    assert report.intact and [d.request_id for d in report.dangling] == [ahead.request_id]


# ------------------------------------------------------------------------------------------ due deletions
@pytest.mark.anyio
async def test_fail_closed_a_due_deletion_waits_for_its_request_record(
    node_pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = node_pair
    url = url_of(a.store)
    app = await enrolled(a)
    start = a.clock_ms()
    keyid = (await app.call("CreateKey", AES))["keyid"]
    await app.call("ScheduleKeyDeletion", {"keyid": keyid, "pendingWindowInDays": 7})
    before = stored_key(url, keyid)
    due = start + 7 * DAY_MS + MARGIN_MS
    scheduler = Scheduler(a, audit_fail_closed=True)

    with refusing_inserts(url, "audit"):
        for _ in range(2):
            assert (await scheduler.run_once(due))["delete_due_keys"] == 0
            assert stored_key(url, keyid) == before
            assert stored_versions(url, keyid) == [1]
    assert f"audit record of job ScheduledKeyDeletion for key {keyid} {LEFT}" in caplog.text
    assert await records_of(a, keyid) == []

    assert (await scheduler.run_once(due))["delete_due_keys"] == 1
    assert stored_key(url, keyid) is None and stored_versions(url, keyid) == []
    records = await records_of(a, keyid)
    assert [(r.action, r.code, r.appid, r.client) for r in records] == [
        ("ScheduledKeyDeletion", REQUEST_CODE, app.appid, "scheduler"),
        ("ScheduledKeyDeletion", 200, app.appid, "scheduler"),
    ]
    assert records[0].request_id == records[1].request_id
    await assert_paired(a)


@pytest.mark.anyio
async def test_fail_closed_two_nodes_delete_each_due_key_once_and_pair_every_record(
    node_pair: tuple[Node, Node],
) -> None:
    a, b = node_pair
    url = url_of(a.store)
    app = await enrolled(a)
    start = a.clock_ms()
    keys = [(await app.call("CreateKey", AES))["keyid"] for _ in range(7)]
    for k in keys:
        await app.call("ScheduleKeyDeletion", {"keyid": k, "pendingWindowInDays": 7})
    kept = keys.pop()
    await app.call("CancelKeyDeletion", {"keyid": kept})
    runs = [
        Scheduler(n, audit_fail_closed=True).run_once(start + 7 * DAY_MS + MARGIN_MS) for _ in range(3) for n in (a, b)
    ]
    assert sum(done["delete_due_keys"] for done in await asyncio.gather(*runs)) == len(keys)
    assert [k for k in [*keys, kept] if stored_key(url, k) is not None] == [kept]

    records = [r for r in await a.store.audit_records(0, 100_000) if r.action == "ScheduledKeyDeletion"]
    assert Counter(r.keyid for r in records if r.code == 200) == Counter(keys)  # one deletion record per key
    by_request = Counter(r.request_id for r in records)
    assert set(by_request.values()) == {2}  # a request record and its outcome
    lost = [r for r in records if r.code not in (REQUEST_CODE, 200)]
    assert all("no longer due" in r.message for r in lost)  # the other node's item, if it got there first
    await assert_paired(a)


@pytest.mark.anyio
async def test_a_deletion_cancelled_after_it_was_listed_is_not_made(node_pair: tuple[Node, Node]) -> None:
    """The fail-closed path lists the due keys, writes a record, then deletes each only if it is still due."""
    a, b = node_pair
    app = await enrolled(a)
    start = a.clock_ms()
    keyid = (await app.call("CreateKey", AES))["keyid"]
    await app.call("ScheduleKeyDeletion", {"keyid": keyid, "pendingWindowInDays": 7})
    due = start + 7 * DAY_MS + MARGIN_MS
    assert (keyid, app.appid) in await b.store.due_key_deletions(due, 100)
    await app.call("CancelKeyDeletion", {"keyid": keyid})
    assert await b.store.delete_key_if_due(keyid, due) is False
    assert stored_key(url_of(a.store), keyid) is not None
    assert await b.store.due_key_deletions(due, 100) == []


@pytest.mark.anyio
async def test_fail_open_the_jobs_go_ahead_with_a_refusing_audit_log(
    node_pair: tuple[Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = node_pair
    url = url_of(a.store)
    app = await enrolled(a)
    start = a.clock_ms()
    rotated, deleted = [(await app.call("CreateKey", AES))["keyid"] for _ in range(2)]
    await app.call("UpdateKeyRotation", {"keyid": rotated, "rotationPeriod": 7})
    await app.call("ScheduleKeyDeletion", {"keyid": deleted, "pendingWindowInDays": 7})
    with refusing_inserts(url, "audit"):
        done = await Scheduler(a).run_once(start + 7 * DAY_MS + MARGIN_MS)
    assert (done["rotate_keys"], done["delete_due_keys"]) == (1, 1)
    assert stored_versions(url, rotated) == [1, 2] and stored_key(url, deleted) is None
    assert f"audit record of job AutoRotateKey for key {rotated} not written" in caplog.text
    assert f"audit record of job ScheduledKeyDeletion for key {deleted} not written" in caplog.text
    assert LEFT not in caplog.text


# ------------------------------------------------------------------------------------------ ehsm-kms admin
SECRET_ENV = "BEYOND_JOBS_PASSPHRASE"
ADMIN_KEY_ENV = "BEYOND_JOBS_ADMIN_KEY"


@dataclass
class OnNode:
    """A node's store and domain key, as ``ehsm-kms admin`` on that node finds them."""

    url: str
    data_dir: Path
    active: str  # an active app
    revoked: str  # a revoked app
    admin_id: str
    admin_key: str

    def store_args(self) -> list[str]:
        return ["--data-dir", str(self.data_dir), "--store-url", self.url]

    def core_args(self) -> list[str]:
        return [*self.store_args(), "--sealer", "passphrase", "--sealer-secret", f"env:{SECRET_ENV}",
                "--core-mode", "inprocess"]  # fmt: skip

    def commands(self) -> list[list[str]]:
        """Every admin command that changes something, in an order in which each one succeeds."""
        key = ["--admin-key", f"env:{ADMIN_KEY_ENV}"]
        return [
            ["rotate-apikey", self.active, *key, *self.core_args()],
            ["revoke-app", self.active, *self.store_args()],
            ["restore-app", self.revoked, *self.store_args()],
            ["issue-enroll-token", *self.store_args()],
            ["rotate-dk", *key, *self.core_args()],
            ["rewrap", "--quiet", *self.core_args()],
            ["reset-admin-credential", *self.core_args()],
        ]

    def admin(self, args: list[str], *, fail_closed: bool) -> Result:
        env = {SECRET_ENV: PASSPHRASE.decode(), ADMIN_KEY_ENV: self.admin_key}
        env["EHSM_KMS_AUDIT_FAIL_CLOSED"] = "1" if fail_closed else "0"
        return CliRunner().invoke(main, ["admin", *args], env=env, catch_exceptions=False)

    def snapshot(self) -> dict[str, Any]:
        """Everything the commands change: apps, the admin credential, enrollment tokens, the blobs the DK wraps,
        and the files of the data directory (the sealed domain key) other than the SQLite database."""
        with database(self.url) as run:
            state = {
                "apps": run("SELECT appid, state, apikey_blob FROM apps ORDER BY appid"),
                "admin": run("SELECT admin_id, blob FROM admin_credential"),
                "enroll tokens": run("SELECT count(*) FROM enroll_tokens"),
                "key versions": run("SELECT keyid, version, blob FROM key_versions ORDER BY keyid, version"),
            }
        files = sorted(p for p in self.data_dir.iterdir() if p.is_file() and not p.name.startswith("ehsm-kms.db"))
        state["files"] = {p.name: p.read_bytes() for p in files}
        return state


@pytest.fixture(params=BACKENDS)
def on_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnNode]:
    """A store with an active app (and a key), a revoked app, and the admin credential the first start made."""
    url = store_url(request.param, request, tmp_path)
    settings = Settings(data_dir=str(tmp_path / "data"), store_url=url, core_mode="inprocess", sealer="passphrase")

    async def made() -> OnNode:
        node = await build_node(settings, secret=PASSPHRASE)
        try:
            first: Caller = await enrolled(node)
            await first.call("CreateKey", AES)
            second = await apps.enroll(node, "open", None)
            await admin.set_app_state(node.store, second["appid"], "revoked")
            shown = io.StringIO()
            assert await admin.ensure_admin_credential(node, shown)
        finally:
            await node.core.close()
            await node.store.close()
        found_id, found_key = ADMIN_ID.search(shown.getvalue()), ADMIN_KEY.search(shown.getvalue())
        assert found_id and found_key
        return OnNode(url, tmp_path / "data", first.appid, second["appid"], found_id.group(1), found_key.group(1))

    yield asyncio.run(made())


def test_fail_closed_admin_commands_are_refused_and_change_nothing(on_node: OnNode) -> None:
    before = on_node.snapshot()
    assert before["files"], "the sealed domain key is in the data directory"
    with refusing_inserts(on_node.url, "audit"):
        for args in on_node.commands():
            out = on_node.admin(args, fail_closed=True)
            assert out.exit_code == errors.AuditUnavailable.exit_code != 0, (args[0], out.output)
            assert "audit log unavailable" in out.output and "nothing was changed" in out.output, out.output
            assert on_node.admin_key not in out.output
            assert on_node.snapshot() == before, args[0]  # after each: nothing done, not merely a net zero
    assert audit_count(on_node.url) == 0


def test_fail_closed_admin_commands_write_their_request_record_first(on_node: OnNode) -> None:
    before = on_node.snapshot()
    for args in on_node.commands():
        out = on_node.admin(args, fail_closed=True)
        assert out.exit_code == 0, (args[0], out.output)
    after = on_node.snapshot()
    for part in ("apps", "admin", "enroll tokens", "key versions", "files"):
        assert after[part] != before[part], part  # each command did its change
    states = {appid: state for appid, state, _ in after["apps"]}
    assert (states[on_node.active], states[on_node.revoked]) == ("revoked", "active")

    async def chain() -> tuple[list[AuditRecord], ChainReport]:
        node = await build_node(
            Settings(data_dir=str(on_node.data_dir), store_url=on_node.url, core_mode="inprocess", sealer="passphrase"),
            secret=PASSPHRASE,
        )
        try:
            return await node.store.audit_records(0, 1000), await audit_chain.verify_store(node.store)
        finally:
            await node.core.close()
            await node.store.close()

    records, report = asyncio.run(chain())
    assert report.intact and report.dangling == [], audit_chain.dangling_lines(report)
    names = ["admin " + args[0] for args in on_node.commands()]
    assert [(r.action, r.code) for r in records] == [(n, c) for n in names for c in (REQUEST_CODE, 200)]
    for ahead, outcome in zip(records[::2], records[1::2], strict=True):
        assert ahead.request_id == outcome.request_id and ahead.client == outcome.client == "cli"
    rotate = records[0:2]
    assert [(r.appid, r.keyid) for r in rotate] == [(on_node.admin_id, on_node.active)] * 2
    reset = records[-2:]
    assert reset[0].keyid == on_node.admin_id  # the request names the credential it replaces,
    assert reset[1].keyid == after["admin"][0][0] != on_node.admin_id  # the outcome the new one
    assert on_node.admin_key not in str([r.as_json() for r in records])


def test_fail_open_admin_commands_change_and_then_report_the_audit_failure(on_node: OnNode) -> None:
    before = on_node.snapshot()
    with refusing_inserts(on_node.url, "audit"):
        out = on_node.admin(["revoke-app", on_node.active, *on_node.store_args()], fail_closed=False)
    # The outcome record could not be written: the command says so.
    assert out.exit_code == errors.AuditUnavailable.exit_code, out.output
    assert "the change was made, but its audit record could not be written" in out.output, out.output
    states = {appid: state for appid, state, _ in on_node.snapshot()["apps"]}
    assert states[on_node.active] == "revoked"  # not refused up front: the change was made
    out = on_node.admin(["restore-app", on_node.active, *on_node.store_args()], fail_closed=False)
    assert out.exit_code == 0, out.output
    assert on_node.snapshot()["apps"] == before["apps"]
    with database(on_node.url) as run:
        rows = run("SELECT action, code, keyid, client FROM audit ORDER BY seq")
    assert [tuple(r) for r in rows] == [("admin restore-app", 200, on_node.active, "cli")]  # no request record
