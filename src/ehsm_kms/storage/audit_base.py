"""The audit log's records and its hash chain, shared by both backends and by ``ehsm-kms admin verify-audit``.

One chain for the whole store (every node of a cluster appends to it): record ``n`` carries the hash of record
``n - 1`` and its own hash covers that, so removing, inserting or changing a record anywhere breaks the chain from
that point on. The head (last seq and hash) is kept in its own row, so cutting records off the end shows too.
Appending takes the head row under the store's write lock (SQLite's single writer, PostgreSQL's row lock), once per
batch of records: :class:`AuditQueue` gathers the records that wait while a batch is being written.

A record holds what an auditor needs and nothing a thief could use: time, appid, action, keyid and key version,
result code (and error message), request id, client address. Never a plaintext, ciphertext, key, secret or
signature.

Two kinds of record share the chain. An *outcome* record (every request has one) carries the result code. With
``audit_fail_closed`` a request that would change state first gets a *request* record, written before the action
runs: code :data:`REQUEST_CODE` (0, which no result has), the action, the appid it claims, the key it names, its
request id. The outcome record that follows has the same request id. A request record with no outcome after it
means the node stopped (or the request was still running) between the two: :class:`ChainVerifier` lists those in
:attr:`ChainReport.dangling`, apart from the breaks, because the chain itself is whole.

Hash of record ``seq`` (SHA-256; integers big-endian, strings UTF-8 with a u32 length prefix)::

    "ehsm-kms audit v1" || seq (u64) || prev_hash (32) || time_ms (i64) || appid || action || keyid
    || key_version (i64) || code (i64) || message || request_id || client

The first record's ``prev_hash`` is 32 zero bytes. The chain shows accidents and tampering by anyone who cannot
rewrite every later record and the head; an operator who wants more exports the log (JSON lines) to storage the
database's writers cannot change, and compares its head with the live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from ehsm_kms import errors
from ehsm_kms.storage.records import ReplayEntry

GENESIS: Final = bytes(32)
REQUEST_CODE: Final = 0  # the code of a request record (written before the action ran; no result has code 0)
_DOMAIN: Final = b"ehsm-kms audit v1"
_MAX_TEXT: Final = 256
_BATCH_MAX: Final = 1000
_IN_FLIGHT: Final = 1
_U32: Final = struct.Struct(">I")
_SEQ: Final = struct.Struct(">Q")
_TIME: Final = struct.Struct(">q")
_NUMBERS: Final = struct.Struct(">qq")
_REPLAYED: Final = errors.ReplayError()


class AuditEvent(NamedTuple):
    """What happened; the store gives it its place in the chain. (Tuples: one is made per request.)"""

    time_ms: int
    appid: str
    action: str
    keyid: str = ""
    key_version: int = 0
    code: int = 200
    message: str = ""
    request_id: str = ""
    client: str = ""


class AuditRecord(NamedTuple):
    """A record in the chain; as a tuple it is also the row (the columns of :data:`AUDIT_COLUMNS`)."""

    seq: int
    time_ms: int
    appid: str
    action: str
    keyid: str
    key_version: int
    code: int
    message: str
    request_id: str
    client: str
    prev_hash: bytes
    hash: bytes

    def event(self) -> AuditEvent:
        return AuditEvent(*self[1:10])

    def as_json(self) -> dict[str, Any]:
        """The export form (one JSON object per line): every field, hashes in hex."""
        return {
            "seq": self.seq,
            "time": self.time_ms,
            "appid": self.appid,
            "action": self.action,
            "keyid": self.keyid,
            "keyversion": self.key_version,
            "code": self.code,
            "message": self.message,
            "requestId": self.request_id,
            "client": self.client,
            "prevHash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AuditRecord:
        return cls(
            seq=int(obj["seq"]),
            time_ms=int(obj["time"]),
            appid=str(obj["appid"]),
            action=str(obj["action"]),
            keyid=str(obj["keyid"]),
            key_version=int(obj["keyversion"]),
            code=int(obj["code"]),
            message=str(obj["message"]),
            request_id=str(obj["requestId"]),
            client=str(obj["client"]),
            prev_hash=bytes.fromhex(obj["prevHash"]),
            hash=bytes.fromhex(obj["hash"]),
        )


def clean_text(value: object) -> str:
    """A field as the log keeps it: text that every backend stores (no NUL, valid UTF-8), at most 256 chars.

    Request fields reach the log before anything validated them (a claimed appid, an unknown action name), so they
    are made storable here rather than letting a strange one make the audit write fail.
    """
    text = value if isinstance(value, str) else str(value)
    if not (text.isascii() and "\x00" not in text):
        text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\\0")
    return text[:_MAX_TEXT]


def clean(event: AuditEvent) -> AuditEvent:
    t, appid, action, keyid, version, code, message, request_id, client = event
    return AuditEvent(
        int(t),
        clean_text(appid),
        clean_text(action),
        clean_text(keyid),
        int(version),
        int(code),
        clean_text(message),
        clean_text(request_id),
        clean_text(client),
    )


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _U32.pack(len(data)) + data


def record_hash(seq: int, prev_hash: bytes, event: AuditEvent) -> bytes:
    return hashlib.sha256(
        b"".join(
            (
                _DOMAIN,
                _SEQ.pack(seq),
                prev_hash,
                _TIME.pack(event.time_ms),
                _text(event.appid),
                _text(event.action),
                _text(event.keyid),
                _NUMBERS.pack(event.key_version, event.code),
                _text(event.message),
                _text(event.request_id),
                _text(event.client),
            )
        )
    ).digest()


def chain(head_seq: int, head_hash: bytes, events: Sequence[AuditEvent]) -> list[AuditRecord]:
    """``events`` as the records that follow the head ``(head_seq, head_hash)``."""
    out: list[AuditRecord] = []
    seq, prev = head_seq, head_hash
    for raw in events:
        event = clean(raw)
        seq += 1
        digest = record_hash(seq, prev, event)
        out.append(AuditRecord(seq, *event, prev, digest))
        prev = digest
    return out


AUDIT_COLUMNS: Final = (
    "seq, time_ms, appid, action, keyid, key_version, code, message, request_id, client, prev_hash, hash"
)


def audit_row(rec: AuditRecord) -> tuple[object, ...]:
    return tuple(rec)


def record_from_row(row: Sequence[Any]) -> AuditRecord:
    values = list(row)
    values[10], values[11] = bytes(values[10]), bytes(values[11])
    return AuditRecord(*values)


# ---------------------------------------------------------------- verification
@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Dangling:
    """A request record that no outcome record follows."""

    seq: int
    request_id: str
    action: str
    appid: str
    keyid: str

    def __str__(self) -> str:
        named = f" keyid {self.keyid}" if self.keyid else ""
        return f"seq {self.seq}: request {self.request_id} {self.action} by appid {self.appid}{named}"


@dataclass
class ChainReport:
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    last_hash: bytes = GENESIS
    breaks: list[ChainBreak] = field(default_factory=list)
    requests: int = 0  # request records seen (fail-closed write-ahead)
    dangling: list[Dangling] = field(default_factory=list)  # request records without an outcome: not breaks

    @property
    def intact(self) -> bool:
        return not self.breaks


class ChainVerifier:
    """Checks records in seq order, one at a time: memory holds only the request records still waiting for their
    outcome (a few, the requests in flight when the log was read), so an export of any size is verified."""

    def __init__(self) -> None:
        self.report = ChainReport()
        self._expected = 1
        self._prev = GENESIS
        self._waiting: dict[str, Dangling] = {}

    def add(self, rec: AuditRecord) -> None:
        rep = self.report
        if rep.records == 0:
            rep.first_seq = rec.seq
        rep.records += 1
        self._pair(rec)
        if rec.seq < self._expected:
            rep.breaks.append(ChainBreak(rec.seq, "out of order or repeated"))
        elif rec.seq > self._expected:
            missing = f"{self._expected}" if rec.seq == self._expected + 1 else f"{self._expected}..{rec.seq - 1}"
            rep.breaks.append(ChainBreak(self._expected, f"record(s) {missing} missing"))
        elif rec.prev_hash != self._prev:
            rep.breaks.append(ChainBreak(rec.seq, f"does not follow record {rec.seq - 1} (prev_hash differs)"))
        if record_hash(rec.seq, rec.prev_hash, rec.event()) != rec.hash:
            rep.breaks.append(ChainBreak(rec.seq, "changed (its hash does not match its content)"))
        self._expected = max(self._expected, rec.seq + 1)
        self._prev = rec.hash
        rep.last_seq, rep.last_hash = rec.seq, rec.hash

    def _pair(self, rec: AuditRecord) -> None:
        """Match outcome records to the request records before them (by request id)."""
        if rec.code != REQUEST_CODE:
            if self._waiting:
                self._waiting.pop(rec.request_id, None)
            return
        self.report.requests += 1
        earlier = self._waiting.pop(rec.request_id, None)
        if earlier is not None:  # the same request id again before an outcome: the first one has none
            self.report.dangling.append(earlier)
        self._waiting[rec.request_id] = Dangling(rec.seq, rec.request_id, rec.action, rec.appid, rec.keyid)

    def finish(self, head: tuple[int, bytes] | None) -> ChainReport:
        """Compare the end of the chain with the stored head (None: an export, which has no head)."""
        rep = self.report
        rep.dangling.extend(self._waiting.values())
        rep.dangling.sort(key=lambda d: d.seq)
        self._waiting = {}
        if head is not None:
            head_seq, head_hash = head
            if head_seq > rep.last_seq:
                first = rep.last_seq + 1
                missing = f"{first}" if head_seq == first else f"{first}..{head_seq}"
                rep.breaks.append(ChainBreak(first, f"record(s) {missing} missing at the end (the head is {head_seq})"))
            elif head_seq < rep.last_seq or head_hash != rep.last_hash:
                rep.breaks.append(ChainBreak(head_seq, "the stored head does not match the last record"))
        return rep


def verify(records: Iterable[AuditRecord], head: tuple[int, bytes] | None = None) -> ChainReport:
    verifier = ChainVerifier()
    for rec in records:
        verifier.add(rec)
    return verifier.finish(head)


# ---------------------------------------------------------------- batching
Replay = tuple[ReplayEntry, int]  # a request's replay record and its caller's now (ms)
AuditWrite = Callable[[list[AuditEvent], list[Replay | None]], Awaitable[tuple[list[AuditRecord], list[bool]]]]


def settle(
    events: list[AuditEvent], replays: list[Replay | None], verdicts: Sequence[bool]
) -> tuple[list[AuditEvent], list[bool]]:
    """The events as they go into the chain, once the replay records that travel with them were written
    (``verdicts``: one per replay record, in order): a refused one's event records the replay error instead of
    the outcome it would have had. Also whether each event's request was accepted (True without a record)."""
    it = iter(verdicts)
    out: list[AuditEvent] = []
    accepted: list[bool] = []
    for event, replay in zip(events, replays, strict=True):
        ok = True if replay is None else next(it)
        accepted.append(ok)
        out.append(event if ok else event._replace(code=_REPLAYED.code, message=_REPLAYED.message or ""))
    return out, accepted


class AuditQueue:
    """Records wait here while the batch before them is written, then go in one transaction (one head lock).

    A record may bring its request's replay record (:meth:`append` with ``replay``): both are written in that
    transaction, so a request that changes nothing waits for one commit, not two; a refused replay record turns
    its audit record into the replay error's.

    ``in_flight`` batches may be written at once; each reads the head it follows inside its own transaction, so the
    chain stays one line whatever the number. One is the default: more only queue on the head's lock (measured on
    PostgreSQL: 64 records in flight gave fewer records per second with 2 or 4 batches than with 1).
    """

    def __init__(self, write: AuditWrite, *, in_flight: int = _IN_FLIGHT) -> None:
        self._write = write
        self._max_in_flight = in_flight
        self._in_flight = 0
        self._pending: list[tuple[AuditEvent, Replay | None, asyncio.Future[tuple[AuditRecord, bool]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def append(self, event: AuditEvent, replay: Replay | None = None) -> tuple[AuditRecord, bool]:
        """The record as chained, and whether ``replay`` (if given) was accepted; durable on return."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a store used from a new event loop (tests, the CLI): start afresh
            self._loop, self._in_flight, self._pending, self._tasks = loop, 0, [], set()
        future: asyncio.Future[tuple[AuditRecord, bool]] = loop.create_future()
        self._pending.append((event, replay, future))
        self._start(loop)
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._pending and self._in_flight < self._max_in_flight:
            batch, self._pending = self._pending[:_BATCH_MAX], self._pending[_BATCH_MAX:]
            self._in_flight += 1
            task = loop.create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(
        self, batch: list[tuple[AuditEvent, Replay | None, asyncio.Future[tuple[AuditRecord, bool]]]]
    ) -> None:
        try:
            records, accepted = await self._write([e for e, _, _ in batch], [r for _, r, _ in batch])
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, _, future), rec, ok in zip(batch, records, accepted, strict=True):
                if not future.done():
                    future.set_result((rec, ok))
        finally:
            self._in_flight -= 1
            for _, _, future in batch:  # nobody will ask a cancelled caller's future for its exception
                if future.done() and not future.cancelled():
                    with contextlib.suppress(BaseException):
                        future.exception()
            if self._loop is not None:
                self._start(self._loop)


class AuditAppender:
    """``append_audit`` and ``append_audit_with_replay`` of both backends, on one :class:`AuditQueue` per store;
    the backend gives the batch write (``_append_audit_batch``, an :data:`AuditWrite`)."""

    _audit_queue: AuditQueue | None = None

    async def _append_audit_batch(
        self, events: list[AuditEvent], replays: list[Replay | None]
    ) -> tuple[list[AuditRecord], list[bool]]:
        raise NotImplementedError

    def _audits(self) -> AuditQueue:
        if self._audit_queue is None:
            self._audit_queue = AuditQueue(self._append_audit_batch)
        return self._audit_queue

    async def append_audit(self, event: AuditEvent) -> AuditRecord:
        return (await self._audits().append(event))[0]

    async def append_audit_with_replay(self, event: AuditEvent, replay: ReplayEntry, now_ms: int) -> bool:
        return (await self._audits().append(event, (replay, now_ms)))[1]
