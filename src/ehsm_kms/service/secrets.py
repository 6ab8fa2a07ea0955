"""The secret manager: the contract's nine secret actions (section 6), and the job that carries out due deletions.

Every action first has the core check the signature and writes the replay record (``node.verify``), so a
replayed request changes nothing and an unsigned probe learns nothing about secrets. Values are sealed and opened
by the core (:mod:`ehsm_kms.core.ops_secrets`), which reads the name and the value from the signed payload.

Versions: PutSecretValue reads the current version ``n``, has the core seal the value for version ``n + 1``
(the version is part of the associated data) and asks the store to add it only if ``n`` is still the current
version. When another request, on this node or another, got there first, it reads again and seals again (with a
short random pause), so concurrent puts end up as versions ``n + 1, n + 2, ...`` with no gap and no duplicate.

Deletion: DeleteSecret marks the secret pending deletion (recovery window 1-365 days, 30 by default) or, with
``forceDelete`` "true" (any case), deletes it at once. From its planned time on a secret is gone for every
action, and :func:`delete_due_secrets`, run by every node's scheduler, removes its rows: each due secret once,
whichever nodes run the job, however many there are, and also when every node was down when it fell due.

``rotationInterval`` is checked (6 hours to 8760 hours), stored and reported with its ``nextRotationDate``, as
the original does; nothing rotates a secret (docs/secrets.md).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any, Final

from ehsm_kms import errors
from ehsm_kms.core import ciphertext as ct_format
from ehsm_kms.core.protocol import Call, SignedRequest
from ehsm_kms.core.specs import KeySpec, KeyUsage, Op, Origin, allows
from ehsm_kms.service import audit_jobs
from ehsm_kms.service.node import LoadedKey, Node
from ehsm_kms.service.registry import Outcome, action
from ehsm_kms.service.scheduler import job
from ehsm_kms.storage.base import RecordExists
from ehsm_kms.storage.records import AppRecord
from ehsm_kms.storage.secret_records import SecretRecord, SecretVersionRecord
from ehsm_kms.wire.envelope import DELETE_SCHEDULED, success_message

DAY_MS: Final = 86_400_000
DEFAULT_RECOVERY_DAYS: Final = 30
ROTATION_MIN_MS: Final = 6 * 3_600_000
ROTATION_MAX_MS: Final = 8760 * 3_600_000
_UNIT_MS: Final = {"d": DAY_MS, "h": 3_600_000, "m": 60_000, "s": 1000}
PURGE_BATCH: Final = 500  # due secrets deleted per statement; the job repeats until none is left
PUT_ATTEMPTS: Final = 200  # of PutSecretValue against concurrent puts of the same secret
_PAUSE_MAX_S: Final = 0.05


# ---------------------------------------------------------------- the contract's answers (section 6.1)
class SecretError(errors.BadRequest):
    """A secret-manager request the contract refuses with its own message (``"result": {}``)."""


class SecretNotFound(SecretError):
    exit_code = errors.EXIT_NOT_FOUND
    default_message = "Can not find secretName"


class SecretExists(SecretError):
    default_message = "Secret name already exists, cannot use the same secret name"


class SecretDeleted(SecretError):
    """The secret is pending deletion: it can be read by DescribeSecret and ListSecrets, and restored."""

    default_message = "Can not put value for a deleted secret."


class RotationIntervalError(SecretError):
    default_message = "The rotation time is less than 6 hours or more than 8760 hours"


class ForceDeleteError(SecretError):
    default_message = "The forceDelete must be true or false"


class SecretKeyNotFound(SecretError):
    """Unknown CMK, or another app's (the same answer). The core answers the same for a key it is not given."""

    exit_code = errors.EXIT_NOT_FOUND
    default_message = "Cannot find cmk by keyid."


class SecretKeyUnusable(SecretError):
    """The CMK is disabled, expired or not a symmetric ENCRYPT_DECRYPT key with its material."""

    default_message = "Wrong parameter, please check your encryptionKeyId."


class DefaultKeyNotFound(SecretError):
    """The app's default secret key is gone from the store, so its secrets cannot be opened (never made anew)."""

    default_message = "Cannot find default CMK."


class NoPreviousVersion(SecretError):
    default_message = "Current secretname cannot find previous version"


class SecretVersionConflict(errors.InternalError):
    """Other requests added versions of the secret at every attempt; the caller may simply try again."""

    default_message = "the secret was changed concurrently; try again"


# ---------------------------------------------------------------- helpers
def rotation_interval_ms(text: str) -> int:
    """``<1-4 digits><d|h|m|s>`` in milliseconds, within 6 h..8760 h (the ``s`` unit never is, as in the original)."""
    unit = _UNIT_MS.get(text[-1:])
    digits = text[:-1]
    if unit is None or not digits.isascii() or not digits.isdigit():
        raise RotationIntervalError()
    interval = int(digits) * unit
    if not ROTATION_MIN_MS <= interval <= ROTATION_MAX_MS:
        raise RotationIntervalError()
    return interval


async def _begin(node: Node, req: SignedRequest) -> AppRecord:
    """The caller's app, once the core has checked the request's signature and its replay record is written."""
    app = await node.app(req.appid)
    await node.verify(req, app)
    return app


async def _core(
    node: Node,
    op: str,
    req: SignedRequest,
    app: AppRecord,
    keys: list[LoadedKey] | None = None,
    args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A core call after :func:`_begin` (whose replay record this request already has)."""
    call = Call(op=op, auth=req, app=node.credential(app), keys=[k.ref() for k in keys or ()], args=args or {})
    return await node.core.call(call)


async def _default_key(node: Node, req: SignedRequest, app: AppRecord, *, make: bool) -> bytes:
    """The app's default secret key, made by the core on the app's first secret (the first one stored wins)."""
    blob = await node.store.get_secret_key(app.appid)
    if blob is None:
        if not make:
            raise DefaultKeyNotFound()
        made = await _core(node, "make_secret_key", req, app)
        blob = await node.store.put_secret_key(app.appid, made["blob"], node.clock_ms())
    return blob


async def _sealing_key(
    node: Node,
    req: SignedRequest,
    app: AppRecord,
    keyid: str | None,
    opening: int | None = None,
    *,
    make_default: bool = False,
) -> tuple[list[LoadedKey], dict[str, Any]]:
    """The keys and args of a core call: the CMK ``keyid`` (its primary version to seal, or the key version
    ``opening`` that the ciphertext names), or the app's default key (made only for a new secret)."""
    if keyid is None:
        return [], {"default_key": await _default_key(node, req, app, make=make_default)}
    try:
        loaded = await node.key(app, keyid, opening)
    except errors.KeyNotFound:
        raise SecretKeyNotFound() from None
    except (errors.KeyDisabled, errors.KeyExpired, errors.KeyPendingDeletion):
        raise SecretKeyUnusable() from None
    rec = loaded.record
    try:
        spec, usage, origin = KeySpec[rec.keyspec], KeyUsage[rec.usage], Origin[rec.origin]
    except KeyError:
        raise SecretKeyUnusable() from None
    if not allows(spec, usage, origin, Op.ENCRYPT) or not loaded.version.blob:
        raise SecretKeyUnusable()
    return [loaded], {}


def _name(payload: dict[str, Any]) -> str:
    name = payload.get("secretName")
    if not isinstance(name, str) or not name:  # the payload rules refused this already
        raise errors.PayloadError("Missing required parameters, The secretName cannot be empty.")
    return name


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------- the actions
@action("CreateSecret")
async def create_secret(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await _begin(node, req)
    name = _name(payload)
    now = node.clock_ms()
    if await node.store.get_secret(app.appid, name, now) is not None:
        raise SecretExists()
    keyid = _text_or_none(payload.get("encryptionKeyId"))
    keys, args = await _sealing_key(node, req, app, keyid, make_default=True)
    interval = _text_or_none(payload.get("rotationInterval"))
    next_rotation = None if interval is None else now + rotation_interval_ms(interval)
    secret_id = str(uuid.uuid4())
    sealed = await _core(node, "seal_secret", req, app, keys, {**args, "secret_id": secret_id, "version": 1})
    secret = SecretRecord(
        secret_id=secret_id,
        appid=app.appid,
        name=name,
        created_ms=now,
        encryption_key_id=keyid,
        description=_text_or_none(payload.get("description")),
        rotation_interval=interval,
        next_rotation_ms=next_rotation,
    )
    try:
        await node.store.create_secret(secret, SecretVersionRecord(secret_id, 1, sealed["ciphertext"], now))
    except RecordExists:  # another request created the name a moment ago
        raise SecretExists() from None
    return Outcome(message=success_message("CreateSecret", secretName=name))


@action("UpdateSecretDesc")
async def update_secret_desc(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await _begin(node, req)
    name = _name(payload)
    if await node.store.update_secret_description(app.appid, name, _text_or_none(payload.get("description"))):
        return Outcome()
    if await node.store.get_secret(app.appid, name, node.clock_ms()) is None:
        raise SecretNotFound("Cannot find secretName")
    raise SecretDeleted("Can not modify a deleted secret.")


@action("PutSecretValue")
async def put_secret_value(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await _begin(node, req)
    name = _name(payload)
    sealing: tuple[str, list[LoadedKey], dict[str, Any]] | None = None
    for attempt in range(PUT_ATTEMPTS):
        now = node.clock_ms()
        secret = await node.store.get_secret(app.appid, name, now)
        if secret is None:
            raise SecretNotFound("Can not find secretName")
        if secret.pending_deletion:
            raise SecretDeleted()
        if secret.current_version < 1:
            raise NoPreviousVersion()
        if sealing is None or sealing[0] != secret.secret_id:
            sealing = (secret.secret_id, *await _sealing_key(node, req, app, secret.encryption_key_id))
        _, keys, args = sealing
        version = secret.current_version + 1
        sealed = await _core(
            node, "seal_secret", req, app, keys, {**args, "secret_id": secret.secret_id, "version": version}
        )
        added = SecretVersionRecord(secret.secret_id, version, sealed["ciphertext"], now)
        if await node.store.put_secret_version(added):
            return Outcome(message=success_message("PutSecretValue", secretName=name))
        # Another put made version n+1 first: a short random pause spreads the next attempts of all the losers.
        await asyncio.sleep(random.uniform(0, min(_PAUSE_MAX_S, 0.002 * 2**attempt)))  # noqa: S311 (jitter)
    raise SecretVersionConflict()


@action("ListSecretVersionIds")
async def list_secret_version_ids(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await _begin(node, req)
    name = _name(payload)
    secret = await node.store.get_secret(app.appid, name, node.clock_ms())
    versions = (
        [] if secret is None or secret.pending_deletion else await node.store.list_secret_versions(secret.secret_id)
    )
    listing = [{"versionId": v.version, "createTime": v.created_ms} for v in versions]
    return Outcome({"secretName": name, "totalCount": len(listing), "versionIds": listing})


@action("ListSecrets")
async def list_secrets(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await _begin(node, req)
    found = await node.store.list_secrets(app.appid, node.clock_ms(), _text_or_none(payload.get("secretName")))
    listing: list[dict[str, Any]] = []
    for secret in found:
        row: dict[str, Any] = {"secretName": secret.name}
        if secret.description:
            row["description"] = secret.description
        row["createTime"] = secret.created_ms
        if secret.planned_delete_ms is not None:
            row["plannedDeleteTime"] = secret.planned_delete_ms
        listing.append(row)
    return Outcome({"totalCount": len(listing), "secretList": listing})


@action("DescribeSecret")
async def describe_secret(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await _begin(node, req)
    secret = await node.store.get_secret(app.appid, _name(payload), node.clock_ms())
    if secret is None:
        return Outcome({})  # the contract: an unknown name is a success with an empty result
    result: dict[str, Any] = {"secretName": secret.name}
    if secret.description:
        result["description"] = secret.description
    result["createTime"] = secret.created_ms
    if secret.planned_delete_ms is not None:
        result["plannedDeleteTime"] = secret.planned_delete_ms
    if secret.rotation_interval:
        result["rotationInterval"] = secret.rotation_interval
        result["lastRotationDate"] = ""  # nothing rotates secrets (the original never set it either)
        result["nextRotationDate"] = secret.next_rotation_ms
    return Outcome(result)


@action("DeleteSecret")
async def delete_secret(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await _begin(node, req)
    name = _name(payload)
    force = False
    flag = payload.get("forceDelete")  # also sent as force_delete (the official SDK); normalize() mapped it
    if flag is not None and flag != "":
        lowered = str(flag).lower()
        if lowered not in ("true", "false"):
            raise ForceDeleteError()
        force = lowered == "true"  # any case (the original checked any case but honoured only "true")
    period = payload.get("recoveryPeriod") or DEFAULT_RECOVERY_DAYS
    days = int(period)
    now = node.clock_ms()
    not_found = "Delete error, Can not find the secretName"
    if force:
        if not await node.store.delete_secret(app.appid, name, now):
            raise SecretNotFound(not_found)
        return Outcome(message=success_message("DeleteSecret", secretName=name))
    if not await node.store.schedule_secret_deletion(app.appid, name, now, now + days * DAY_MS):
        raise SecretNotFound(not_found)
    return Outcome(message=DELETE_SCHEDULED.format(secretName=name, days=days))


@action("GetSecretValue")
async def get_secret_value(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await _begin(node, req)
    name = _name(payload)
    secret = await node.store.get_secret(app.appid, name, node.clock_ms())
    if secret is None or secret.pending_deletion:
        raise SecretNotFound(f"Can't find the {name}'s value.")
    asked = payload.get("versionId")
    stored = await node.store.get_secret_version(secret.secret_id, int(asked) if asked else None)
    if stored is None:
        return Outcome({})  # the contract: an unknown version is a success with an empty result
    # The key version that sealed it is named by the ciphertext's header (the CMK may have been rotated since).
    key_version = ct_format.key_version(stored.ciphertext)
    keys, args = await _sealing_key(node, req, app, secret.encryption_key_id, key_version)
    args.update(secret_id=secret.secret_id, version=stored.version, ciphertext=stored.ciphertext)
    opened = await _core(node, "open_secret", req, app, keys, args)
    return Outcome(
        {
            "secretName": name,
            "secretData": opened["secretData"],
            "versionId": stored.version,
            "createTime": stored.created_ms,
        }
    )


@action("RestoreSecret")
async def restore_secret(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await _begin(node, req)
    name = _name(payload)
    if not await node.store.restore_secret(app.appid, name, node.clock_ms()):
        raise SecretNotFound("Can not restore secret, the secretName not find.")
    return Outcome(message=success_message("RestoreSecret", secretName=name))


# ---------------------------------------------------------------- the deletion job
PURGE_ACTION: Final = "PurgeDueSecret"


@job("delete_due_secrets")
async def delete_due_secrets(node: Node, now_ms: int) -> int:
    """Delete every secret whose deletion is due at ``now_ms``, in batches until none is left; the number deleted.

    Safe on every node at once: the store hands each due secret to one caller. A secret that fell due while every
    node was down is deleted by the first run after one comes back (each node runs its jobs as it starts).
    """
    done = 0
    while True:
        purged = await node.store.purge_due_secrets(now_ms, PURGE_BATCH)
        done += len(purged)
        for gone in purged:
            # Its DeleteSecret request has its records (written ahead with audit_fail_closed); this one says the
            # rows are gone. The secret was already gone for every action since its planned time.
            await audit_jobs.job_event(node, audit_jobs.JobItem(PURGE_ACTION, gone.appid, gone.secret_id), now_ms)
        if len(purged) < PURGE_BATCH:
            return done
