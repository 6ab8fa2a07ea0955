"""The audit trail: one record per request, whatever its outcome, and per job item; verification and export.

The server opens a :class:`Trail` for each request (:func:`begin`); the layers below note on it what the record
needs and only they know (the appid, the key and key version the request used), and the server writes the
*outcome* record after the action ran and before it answers (:func:`record`). A record holds time, appid, action,
keyid, key version, result code (with the error message), request id and client address; never a plaintext,
ciphertext, key, secret or signature.

Without ``audit_fail_closed`` (the default) that is the only write: a failed one is logged and the request
answered. With ``audit_fail_closed``:

- a request whose action can change state first gets a *request* record (:func:`write_ahead`: code 0, the appid
  it claims, the action, the key, app or secret it names, request id, client), written durably before the action
  runs. If it cannot be written the request is refused (``audit log unavailable``) and nothing has happened. So no
  key, app, secret or setting changes without a record that it was asked for.
- the outcome record follows as always; if it cannot be written the result is withheld (``audit log
  unavailable``): nobody gets a plaintext, a signature or a new key id without a trail. A state change has then
  taken effect with only its request record in the log, which ``verify-audit`` lists as a request without an
  outcome (so does a node killed between the two writes).

Actions listed in :data:`NO_LASTING_EFFECT` (Encrypt, Decrypt, Sign, the List and Describe actions, ...) change
nothing but the replay record, and their outcome record is written before any result leaves the node; a request
record would add a second durable write to the hot path and no guarantee, so they get none. Every other action,
including one added later and not listed here, gets one.

The other two writers of state follow the same rule with ``audit_fail_closed`` (:mod:`ehsm_kms.service.audit_jobs`).
A background job (automatic rotation, due key deletion) writes each item's request record (client ``scheduler``)
before it changes anything for it; if that fails, the item and the rest of the batch are left as they are, still
due, for the next run of any node, and the error is logged (action and keyid only). An ``ehsm-kms admin`` command
on the node writes its request record (client ``cli``) before its change, or is refused (``audit log
unavailable``, exit code 7) with nothing changed. Both then write their outcome record as before, with the request
record's request id. Without the setting, only the outcome record is written.

The records form one hash chain for the whole store (:mod:`ehsm_kms.storage.audit_base`; docs/beyond.md says why
one chain rather than one per node), checked by ``ehsm-kms admin verify-audit``
(:mod:`ehsm_kms.service.audit_chain`).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ehsm_kms import errors
from ehsm_kms.storage.audit_base import (
    REQUEST_CODE,
    AuditEvent,
)

if TYPE_CHECKING:
    from ehsm_kms.service.node import Node
    from ehsm_kms.storage.records import ReplayEntry

log = logging.getLogger("ehsm_kms.audit")


# Actions whose only effect is their answer (and the replay record every signed request leaves): no request record
# before them. A name not here gets one, so an action added to the table is written ahead until listed.
NO_LASTING_EFFECT: frozenset[str] = frozenset(
    {
        "GetVersion",
        "AttestNode",
        "ListKey",
        "GetPublicKey",
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "Sign",
        "Verify",
        "AsymmetricEncrypt",
        "AsymmetricDecrypt",
        "ExportDataKey",
        "GenerateQuote",
        "VerifyQuote",
        "GetQuotePolicy",
        "ListSecretVersionIds",
        "ListSecrets",
        "DescribeSecret",
        "GetSecretValue",
        "ListKeyVersions",
        "ReEncrypt",
        "GenerateMac",
        "VerifyMac",
        "ListAliases",
        "DescribeKey",
        "GenerateRandom",
        "AdminListApps",
        "AdminShowApp",
    }
)
# What a request record names when the payload has no keyid: the app an admin action acts on, or the secret.
_NAMED_FIELDS = ("keyid", "appid", "secretName")


@dataclass
class Trail:
    appid: str = "-"
    keyid: str = ""
    key_version: int = 0
    key_noted: bool = False
    request_id: str = ""
    client: str = "-"
    # An action in NO_LASTING_EFFECT: its replay record may wait for the outcome record and commit with it.
    joins_replay: bool = False
    replay: ReplayEntry | None = None


_TRAIL: ContextVar[Trail | None] = ContextVar("ehsm_kms_audit_trail", default=None)


def begin(request_id: str = "", client: str = "-") -> Trail:
    """A new trail for the request this task serves (each request runs in its own task, so its own context)."""
    trail = Trail(request_id=request_id, client=client)
    _TRAIL.set(trail)
    return trail


def join_replay(action: str) -> None:
    """The request serves ``action``: if it changes nothing, its replay record goes with its outcome record."""
    trail = _TRAIL.get()
    if trail is not None:
        trail.joins_replay = action in NO_LASTING_EFFECT


def defer_replay(entry: ReplayEntry) -> bool:
    """Hand the request's replay record to its outcome record (:func:`record`), which writes both in one
    transaction before the answer leaves. False when the request's action may change state (its replay record
    must be durable before that), outside a request, or once one is held: the caller writes it now."""
    trail = _TRAIL.get()
    if trail is None or not trail.joins_replay or trail.replay is not None:
        return False
    trail.replay = entry
    return True


def writes_ahead(action: str) -> bool:
    """Whether ``action`` gets a request record before it runs (with ``audit_fail_closed``)."""
    return action not in NO_LASTING_EFFECT


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
    code, message = _outcome(result)
    made = result.get("result")
    if isinstance(made, dict):
        if trail.appid == "-" and isinstance(made.get("appid"), str):
            trail.appid = made["appid"]  # Enroll: the app it made
        if not trail.keyid and isinstance(made.get("keyid"), str):
            trail.keyid = made["keyid"]  # CreateKey: the key it made
    if node is None:
        log.error("audit record of request %s not written: %s", request_id, why(errors.CoreUnavailable()))
        return errors.AuditUnavailable().envelope() if fail_closed else result
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
    if trail.replay is not None:
        replay, trail.replay = trail.replay, None
        try:
            if await node.timed_store(node.store.append_audit_with_replay(event, replay, node.clock_ms())):
                return result
            return errors.ReplayError().envelope()
        except Exception as exc:
            # Neither was written. Replay protection never depends on the audit log: the replay record alone,
            # then the outcome record alone, as for any request (logged, or the answer withheld).
            log.warning("audit and replay records of request %s not written together: %s", request_id, why(exc))
            try:
                accepted = await node.timed_store(node.store.record_request(replay, node.clock_ms()))
            except errors.EhsmError as failed:
                result = failed.envelope()
            else:
                result = result if accepted else errors.ReplayError().envelope()
            code, message = _outcome(result)
            event = event._replace(code=code, message=message)
    try:
        await node.timed_store(node.store.append_audit(event))
    except Exception as exc:
        log.error("audit record of request %s not written: %s", request_id, why(exc))
        if fail_closed:
            return errors.AuditUnavailable().envelope()
    return result


def _outcome(result: dict[str, Any]) -> tuple[int, str]:
    """The code and message an outcome record takes from the answer (no message for a success)."""
    code = int(result.get("code", 500))
    return code, "" if code == 200 else str(result.get("message") or "")


async def write_ahead(node: Node, action: str, payload: dict[str, Any] | None) -> None:
    """With ``audit_fail_closed``, before the action runs: the request record, durably, or the request is refused.

    It names what the request claims (nothing is authenticated or resolved yet): the appid, and the first of the
    payload's keyid (or alias), appid (admin actions) or secretName. No other payload field is read.
    """
    if action in NO_LASTING_EFFECT:
        return
    trail = _TRAIL.get() or Trail()
    named = ""
    if payload:
        named = next((v for f in _NAMED_FIELDS if isinstance(v := payload.get(f), str) and v), "")
    event = AuditEvent(
        time_ms=node.clock_ms(),
        appid=trail.appid,
        action=action,
        keyid=named,
        code=REQUEST_CODE,
        request_id=trail.request_id,
        client=trail.client,
    )
    try:
        await node.store.append_audit(event)
    except Exception as exc:
        log.error("audit record of request %s not written before it ran; refused: %s", trail.request_id, why(exc))
        raise errors.AuditUnavailable() from None


def why(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, errors.EhsmError) else None
    return f"{type(exc).__name__}: {message or exc}"
