"""The audit records of the two writers of state that are not requests: the scheduler's background jobs
(automatic rotation, due key deletion) and the ``ehsm-kms admin`` commands run on the node.

Both follow the rule of requests (:mod:`ehsm_kms.service.audit`): with ``audit_fail_closed`` a request record is
written durably before anything changes, and the outcome record after it, with the same request id.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ehsm_kms import errors
from ehsm_kms.service.audit import why
from ehsm_kms.storage.audit_base import REQUEST_CODE, AuditEvent

if TYPE_CHECKING:
    from ehsm_kms.service.node import Node
    from ehsm_kms.storage.base import Store

log = logging.getLogger("ehsm_kms.audit")


# ---------------------------------------------------------------- background jobs
@dataclass(slots=True)
class JobItem:
    """One item of a background job (a rotation, a deletion): what its records name. Its request record and its
    outcome record share the request id, so ``verify-audit`` pairs them."""

    action: str
    appid: str
    keyid: str
    version: int = 0
    request_id: str = field(default_factory=lambda: "job-" + uuid.uuid4().hex[:12])
    written_ahead: bool = False

    def event(self, now_ms: int, code: int, message: str = "") -> AuditEvent:
        return AuditEvent(
            time_ms=now_ms,
            appid=self.appid,
            action=self.action,
            keyid=self.keyid,
            key_version=self.version,
            code=code,
            message=message,
            request_id=self.request_id,
            client="scheduler",
        )


# The scheduler's setting for the jobs it is running (its run is one task: the jobs it awaits see it).
_JOBS_FAIL_CLOSED: ContextVar[bool] = ContextVar("ehsm_kms_jobs_fail_closed", default=False)


@contextlib.contextmanager
def jobs_fail_closed(on: bool) -> Iterator[None]:
    """The jobs run inside this write each item's request record first (``audit_fail_closed``), or not."""
    token = _JOBS_FAIL_CLOSED.set(on)
    try:
        yield
    finally:
        _JOBS_FAIL_CLOSED.reset(token)


def jobs_write_ahead() -> bool:
    return _JOBS_FAIL_CLOSED.get()


async def job_ahead(node: Node, item: JobItem, now_ms: int) -> bool:
    """Before a job changes anything for ``item``, with ``audit_fail_closed``: its request record, durably.

    False when it cannot be written: the job leaves the item (and the rest of its batch) as it is, still due, for
    its next run on any node. Without the setting nothing is written and the item goes ahead.
    """
    if not _JOBS_FAIL_CLOSED.get():
        return True
    try:
        await node.store.append_audit(item.event(now_ms, REQUEST_CODE))
    except Exception as exc:
        log.error(
            "audit record of job %s for key %s not written before it ran; left for the next run: %s",
            item.action,
            item.keyid,
            why(exc),
        )
        return False
    item.written_ahead = True
    return True


async def job_event(node: Node, item: JobItem, now_ms: int, *, error: errors.EhsmError | None = None) -> None:
    """The outcome record of ``item``: done, or (only after a request record, to pair with it) not done and why.

    A failure is logged, not raised: the item is done (or not) already, and a done item must not be done again.
    """
    if error is not None and not item.written_ahead:
        return
    code, message = (200, "") if error is None else (error.code, error.message or "")
    try:
        await node.store.append_audit(item.event(now_ms, code, message))
    except Exception as exc:
        log.error("audit record of job %s for key %s not written: %s", item.action, item.keyid, why(exc))


# ---------------------------------------------------------------- ehsm-kms admin on the node
@dataclass(slots=True)
class AdminChange:
    """One change an ``ehsm-kms admin`` command makes (client ``cli``): who (the admin id, or ``-`` for commands
    that need none) did what to which app or thing (in the keyid field). One request id pairs its records."""

    action: str
    actor: str
    subject: str
    request_id: str = field(default_factory=lambda: "cli-" + uuid.uuid4().hex[:12])

    def event(self, now_ms: int, code: int, message: str = "", subject: str | None = None) -> AuditEvent:
        return AuditEvent(
            time_ms=now_ms,
            appid=self.actor,
            action=self.action,
            keyid=self.subject if subject is None else subject,
            code=code,
            message=message,
            request_id=self.request_id,
            client="cli",
        )


async def admin_ahead(store: Store, change: AdminChange, now_ms: int) -> None:
    """With ``audit_fail_closed``, before the command changes anything: its request record, or the command is
    refused (:class:`~ehsm_kms.errors.AuditUnavailable`) and nothing has changed."""
    try:
        await store.append_audit(change.event(now_ms, REQUEST_CODE))
    except Exception as exc:
        log.error("audit record of %s not written before it ran; refused: %s", change.action, why(exc))
        raise errors.AuditUnavailable(
            "audit log unavailable: the request record could not be written (audit_fail_closed); nothing was changed"
        ) from None


async def admin_event(
    store: Store,
    change: AdminChange,
    now_ms: int,
    *,
    subject: str | None = None,
    error: errors.EhsmError | None = None,
) -> None:
    """The outcome record of a command's change (``subject``: what it made, when the request did not know it yet);
    a failure is raised, so the command fails and says so (the change itself has been made)."""
    code, message = (200, "") if error is None else (error.code, error.message or "")
    try:
        await store.append_audit(change.event(now_ms, code, message, subject))
    except Exception as exc:
        log.error("audit record of %s not written: %s", change.action, why(exc))
        raise errors.AuditUnavailable(
            "audit log unavailable: the change was made, but its audit record could not be written"
        ) from None
