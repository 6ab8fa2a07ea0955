"""Key versions: RotateKey, ListKeyVersions, SetMinDecryptVersion, UpdateKeyRotation, ReEncrypt, and the job that
rotates keys automatically.

Encrypt, GenerateDataKey and Sign use a key's primary version; Decrypt, ReEncrypt and ExportDataKey use the version
the ciphertext names, Verify the primary or the ``keyversion`` it names. Versions are never deleted: retiring old
ones is ``minDecryptVersion`` (which can be lowered again), deleting the key deletes them all.

A rotation writes the new version and moves the primary in one transaction, conditional on the primary it read
(:meth:`~ehsm_kms.storage.keyadmin_base.KeyAdminStore.add_key_version`): a crash before the commit leaves the key
as it was, and of two nodes rotating at once one wins and the other does nothing. The automatic rotation also
requires the key's next rotation time to be the one it read and moves it one period on, so each period's
rotation happens once in the whole cluster.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from ehsm_kms import errors
from ehsm_kms.core.protocol import Call, SignedRequest
from ehsm_kms.service import audit_jobs
from ehsm_kms.service.node import LoadedKey, Node
from ehsm_kms.service.registry import Outcome, action
from ehsm_kms.service.scheduler import job
from ehsm_kms.storage.records import AppRecord, KeyVersionRecord, ReplayEntry

log = logging.getLogger("ehsm_kms.versions")

DAY_MS: Final = 86_400_000
_ATTEMPTS: Final = 3
_JOB_BATCH: Final = 100
_LOST: Final = "not rotated here: the key changed meanwhile (rotated by another node or by hand, or deleted)"


async def looked_up(node: Node, req: SignedRequest, app: AppRecord, keyid: Any, **kw: Any) -> LoadedKey:
    """A key lookup for a signed request; on failure the signature is checked first (nothing leaks unsigned)."""
    try:
        return await node.key(app, keyid, **kw)
    except errors.EhsmError:
        await node.verify(req, app)
        raise


async def managed(node: Node, req: SignedRequest, payload: dict[str, Any]) -> tuple[AppRecord, LoadedKey]:
    """Key management: the signature (and replay record) first, then the key in whatever state it is."""
    app = await node.app(req.appid)
    await node.verify(req, app)
    return app, await node.key(app, payload.get("keyid"), manage=True)


@action("RotateKey")
async def rotate_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    replay: ReplayEntry | None = node.replay_entry(req)
    for _ in range(_ATTEMPTS):
        key = await looked_up(node, req, app, payload.get("keyid"))
        rec = key.record
        made = await node.call("rotate_key", req, app, [key], {"version": rec.primary_version + 1}, record=False)
        version = KeyVersionRecord(rec.keyid, made["version"], made["blob"], node.clock_ms())
        added = await node.store.add_key_version(version, expected_primary=rec.primary_version, replay=replay)
        node.forget_key(rec.keyid)
        if added:
            return Outcome({"keyid": rec.keyid, "keyversion": version.version})
        replay = None  # the replay record committed with the attempt that lost the race
    raise errors.KeyRotationConflict()


@action("ListKeyVersions")
async def list_key_versions(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, key = await managed(node, req, payload)
    rec = key.record
    versions = await node.store.list_key_versions(rec.keyid)
    listing = [
        {
            "keyversion": v.version,
            "creationDate": v.created_ms,
            "primary": v.version == rec.primary_version,
            "retired": v.version < rec.min_decrypt_version,
        }
        for v in versions
    ]
    result = {
        "keyid": rec.keyid,
        "primaryVersion": rec.primary_version,
        "minDecryptVersion": rec.min_decrypt_version,
        "list": listing,
    }
    return Outcome(result)


@action("SetMinDecryptVersion")
async def set_min_decrypt_version(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app, key = await managed(node, req, payload)
    keyid, version = key.record.keyid, payload["minDecryptVersion"]
    if not await node.store.set_min_decrypt_version(app.appid, keyid, int(version)):
        if await node.store.get_key(keyid) is None:
            raise errors.KeyNotFound()
        raise errors.KeyVersionInvalid("minDecryptVersion must not be above the key's primary version")
    node.forget_key(keyid)
    return Outcome({"keyid": keyid, "minDecryptVersion": int(version)})


@action("UpdateKeyRotation")
async def update_key_rotation(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app, key = await managed(node, req, payload)
    rec = key.record
    days = int(payload.get("rotationPeriod") or 0)
    if days and rec.origin != "EH_INTERNAL_KEY":
        raise errors.KeyRotationRefused()
    next_ms = node.clock_ms() + days * DAY_MS if days else 0
    if not await node.store.set_rotation(app.appid, rec.keyid, days * DAY_MS, next_ms):
        raise errors.KeyNotFound()
    node.forget_key(rec.keyid)
    return Outcome({"keyid": rec.keyid, "rotationPeriod": days, "nextRotationDate": next_ms})


@action("ReEncrypt")
async def re_encrypt(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    dest = "destination_keyid" if payload.get("destination_keyid") else "keyid"
    _, _, result = await node.keyed("re_encrypt", req, ("keyid", dest), version_field="ciphertext", payload=payload)
    return Outcome(result)


@job("rotate_keys")
async def rotate_due_keys(node: Node, now_ms: int) -> int:
    """Rotate every key whose automatic rotation is due (a batch per run); each to exactly one node."""
    done = 0
    for rec, primary in await node.store.due_rotations(now_ms, _JOB_BATCH):
        item = audit_jobs.JobItem("AutoRotateKey", rec.appid, rec.keyid, rec.primary_version + 1)
        if not await audit_jobs.job_ahead(node, item, now_ms):  # audit_fail_closed: not rotated, still due
            break
        key = LoadedKey(rec, primary)
        try:
            made = await node.core.call(Call(op="auto_rotate_key", keys=[key.ref()], args={"version": item.version}))
        except errors.EhsmError as exc:
            log.warning("automatic rotation of key %s failed: %s", rec.keyid, exc.message)
            await audit_jobs.job_event(node, item, now_ms, error=exc)
            continue
        version = KeyVersionRecord(rec.keyid, made["version"], made["blob"], now_ms)
        claim = (rec.next_rotation_ms, now_ms + rec.rotation_period_ms)
        if await node.store.add_key_version(version, expected_primary=rec.primary_version, next_rotation=claim):
            node.forget_key(rec.keyid)
            done += 1
            item.version = version.version
            await audit_jobs.job_event(node, item, now_ms)
        else:  # another node rotated it for this period, or it was rotated by hand or scheduled for deletion
            await audit_jobs.job_event(node, item, now_ms, error=errors.KeyRotationConflict(_LOST))
    return done
