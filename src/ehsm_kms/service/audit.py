"""The audit trail: one record per request, whatever its outcome, and per job item; verification and export.

The server opens a :class:`Trail` for each request (:func:`begin`); the layers below note on it what the record
needs and only they know (the appid, the key and key version the request used), and the server writes the record
after the action ran (:func:`record`). A record holds time, appid, action, keyid, key version, result code (with
the error message), request id and client address; never a plaintext, ciphertext, key, secret or signature.

With ``audit_fail_closed`` a request whose record cannot be written is answered ``audit log unavailable`` instead
of its result: nobody gets a plaintext, a signature or a new key id without a trail. An action that changed state
(CreateKey, RotateKey, ...) has still taken effect then, as when a response is lost; the client sees a failure.

The records form one hash chain for the whole store (:mod:`ehsm_kms.storage.audit_base`; docs/beyond.md says why
one chain rather than one per node), checked by ``ehsm-kms admin verify-audit``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ehsm_kms import errors
from ehsm_kms.storage.audit_base import AuditEvent, AuditRecord, ChainBreak, ChainReport, ChainVerifier

if TYPE_CHECKING:
    from ehsm_kms.service.node import Node
    from ehsm_kms.storage.base import Store

log = logging.getLogger("ehsm_kms.audit")

_PAGE = 1000


@dataclass
class Trail:
    appid: str = "-"
    keyid: str = ""
    key_version: int = 0
    key_noted: bool = False


_TRAIL: ContextVar[Trail | None] = ContextVar("ehsm_kms_audit_trail", default=None)


def begin() -> Trail:
    """A new trail for the request this task serves (each request runs in its own task, so its own context)."""
    trail = Trail()
    _TRAIL.set(trail)
    return trail


def note_request(appid: Any, payload: Any) -> None:
    """The appid the request claims and the key its payload names (until a lookup notes the key it resolved)."""
    trail = _TRAIL.get()
    if trail is None:
        return
    if isinstance(appid, str):
        trail.appid = appid
    if isinstance(payload, dict) and isinstance(payload.get("keyid"), str):
        trail.keyid = payload["keyid"]


def note_key(keyid: str, version: int) -> None:
    """The first key a request looked up (the one its ``keyid`` names), with the version it used."""
    trail = _TRAIL.get()
    if trail is None or trail.key_noted:
        return
    trail.keyid, trail.key_version, trail.key_noted = keyid, version, True


def note_subject(name: str) -> None:
    """What an action without a key acted on (an admin action's app), kept in the record's keyid field."""
    note_key(name, 0)


async def record(
    node: Node | None,
    trail: Trail,
    action: str,
    result: dict[str, Any],
    request_id: str,
    client: str,
    *,
    fail_closed: bool,
) -> dict[str, Any]:
    """Write the request's record; the result to send (with ``fail_closed``, an error when the write failed)."""
    code = int(result.get("code", 500))
    message = "" if code == 200 else str(result.get("message") or "")
    made = result.get("result")
    if trail.appid == "-" and isinstance(made, dict) and isinstance(made.get("appid"), str):
        trail.appid = made["appid"]  # Enroll: the app it made
    try:
        if node is None:
            raise errors.CoreUnavailable()
        event = AuditEvent(
            time_ms=node.clock_ms(),
            appid=trail.appid,
            action=action or "-",
            keyid=trail.keyid,
            key_version=trail.key_version,
            code=code,
            message=message,
            request_id=request_id,
            client=client,
        )
        await node.store.append_audit(event)
    except Exception as exc:
        log.error("audit record of request %s not written: %s", request_id, _why(exc))
        if fail_closed:
            return errors.AuditUnavailable().envelope()
    return result


async def job_event(node: Node, action: str, appid: str, keyid: str, version: int, now_ms: int) -> None:
    """The record of one item a background job did (a rotation, a deletion); a failure is logged, not raised,
    because the item is done and must not be done again."""
    event = AuditEvent(
        time_ms=now_ms,
        appid=appid,
        action=action,
        keyid=keyid,
        key_version=version,
        code=200,
        request_id="job-" + uuid.uuid4().hex[:12],
        client="scheduler",
    )
    try:
        await node.store.append_audit(event)
    except Exception as exc:
        log.error("audit record of job %s for key %s not written: %s", action, keyid, _why(exc))


async def admin_event(store: Store, action: str, actor: str, subject: str, now_ms: int) -> None:
    """The record of a change made by an ``ehsm-kms admin`` command on the node (client ``cli``): who (the admin
    id, or ``-`` for commands that need none) did what to which app (in the keyid field); a failure is raised."""
    event = AuditEvent(
        time_ms=now_ms,
        appid=actor,
        action=action,
        keyid=subject,
        request_id="cli-" + uuid.uuid4().hex[:12],
        client="cli",
    )
    await store.append_audit(event)


def _why(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, errors.EhsmError) else None
    return f"{type(exc).__name__}: {message or exc}"


# ---------------------------------------------------------------- verification and export
async def stored_records(store: Store, after_seq: int = 0, upto_seq: int | None = None) -> AsyncIterator[AuditRecord]:
    seq = after_seq
    while True:
        page = await store.audit_records(seq, _PAGE)
        for rec in page:
            if upto_seq is not None and rec.seq > upto_seq:
                return
            yield rec
        if len(page) < _PAGE:
            return
        seq = page[-1].seq


async def verify_store(store: Store) -> ChainReport:
    """Check the whole chain against the stored head (read first, so records appended meanwhile do not count)."""
    head = await store.audit_head()
    verifier = ChainVerifier()
    async for rec in stored_records(store, upto_seq=None if head is None else head[0]):
        verifier.add(rec)
    report = verifier.finish(head)
    if head is None:
        report.breaks.append(ChainBreak(report.last_seq, "the chain's head row is missing"))
    return report


def verify_records(records: Iterable[AuditRecord]) -> ChainReport:
    """Check an export (records in seq order; an export has no stored head to compare the end with)."""
    verifier = ChainVerifier()
    for rec in records:
        verifier.add(rec)
    return verifier.finish(None)
