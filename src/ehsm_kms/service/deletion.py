"""Scheduled key deletion: ScheduleKeyDeletion, CancelKeyDeletion, and the job that deletes keys when they are due.

A key pending deletion refuses every use (``keyid is pending deletion``) but keeps its state, versions and alias;
CancelKeyDeletion gives it back exactly as it was (enabled or disabled). The deletion is the user's own schedule
(DESIGN invariant 8): nothing else deletes a key. When it falls due, the first node whose job runs deletes it with
one ``DELETE ... RETURNING`` (with ``audit_fail_closed``: a ``DELETE`` of that key if still due, after its audit
request record), so it is deleted once, and a node that was down when it fell due loses nothing (the next run of
any node picks it up). DeleteKey still deletes at once, as in eHSM-KMS.
"""

from __future__ import annotations

from typing import Any, Final

from ehsm_kms import errors
from ehsm_kms.core.protocol import SignedRequest
from ehsm_kms.service import audit_jobs
from ehsm_kms.service.node import Node
from ehsm_kms.service.registry import Outcome, action
from ehsm_kms.service.scheduler import job
from ehsm_kms.service.versions import DAY_MS, managed
from ehsm_kms.storage.records import KEY_PENDING_DELETION

DEFAULT_WINDOW_DAYS: Final = 30
_JOB_BATCH: Final = 500
_JOB_ACTION: Final = "ScheduledKeyDeletion"
_NOT_DUE: Final = "not deleted here: no longer due (deleted by another node, or the deletion was cancelled)"


@action("ScheduleKeyDeletion")
async def schedule_key_deletion(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app, key = await managed(node, req, payload)
    rec = key.record
    days = int(payload.get("pendingWindowInDays") or DEFAULT_WINDOW_DAYS)
    due = node.clock_ms() + days * DAY_MS
    if not await node.store.schedule_key_deletion(app.appid, rec.keyid, due):
        node.forget_key(rec.keyid)
        raise errors.KeyPendingDeletion() if await node.store.get_key(rec.keyid) else errors.KeyNotFound()
    node.forget_key(rec.keyid)
    return Outcome({"keyid": rec.keyid, "deletionDate": due, "keyState": KEY_PENDING_DELETION})


@action("CancelKeyDeletion")
async def cancel_key_deletion(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app, key = await managed(node, req, payload)
    keyid = key.record.keyid
    node.forget_key(keyid)
    if not await node.store.cancel_key_deletion(app.appid, keyid):
        raise errors.KeyNotPendingDeletion()
    found = await node.store.get_key(keyid)
    if found is None:
        raise errors.KeyNotFound()
    return Outcome({"keyid": keyid, "keyState": found[0].state})


@job("delete_due_keys")
async def delete_due_keys(node: Node, now_ms: int) -> int:
    """Delete the keys that are due (a batch per run), each once in the cluster, each with its audit record.

    With ``audit_fail_closed`` each key first gets its request record and is then deleted on its own, if it is still
    due (another node may have deleted it, or its owner cancelled, meanwhile: the outcome record says so). When a
    request record cannot be written the key and the rest of the batch stay as they are, for the next run.
    """
    if not audit_jobs.jobs_write_ahead():
        deleted = await node.store.delete_due_keys(now_ms, _JOB_BATCH)
        for keyid, appid in deleted:
            node.forget_key(keyid)
            await audit_jobs.job_event(node, audit_jobs.JobItem(_JOB_ACTION, appid, keyid), now_ms)
        return len(deleted)
    done = 0
    for keyid, appid in await node.store.due_key_deletions(now_ms, _JOB_BATCH):
        item = audit_jobs.JobItem(_JOB_ACTION, appid, keyid)
        if not await audit_jobs.job_ahead(node, item, now_ms):
            break
        gone = await node.store.delete_key_if_due(keyid, now_ms)
        node.forget_key(keyid)
        await audit_jobs.job_event(node, item, now_ms, error=None if gone else errors.KeyNotPendingDeletion(_NOT_DUE))
        done += gone
    return done
