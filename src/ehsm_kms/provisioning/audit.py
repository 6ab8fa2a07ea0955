"""The dkeyserver's audit of releases: every release, refusal, rotation and recovery, as hash-chained JSON lines.

The idea is the store's audit chain (:mod:`ehsm_kms.storage.audit_base`): record ``n`` carries the hash of
record ``n - 1`` and its own hash covers that, so a record removed, inserted or changed anywhere breaks the
chain from there; a head file (``audit.head``: last seq and hash, replaced atomically) shows records cut off the
end. The records differ (a verdict's measurements do not fit the store's 256-character fields), so the hash is
over the record's canonical JSON::

    hash = SHA-256("ehsm-kms dkeyserver audit v1" || 0x00 || canonical JSON of the record without "hash")

canonical JSON: sorted keys, no spaces, ASCII only. The first record's ``prev`` is 64 zeros (hex). Records name
who (peer address, role), how (evidence kind, verdict: status and measurements; or the refusal reason), what
(DK version) and when; never a key. Each record is flushed and fsync'ed before the release it records is sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ehsm_kms import errors

_DOMAIN = b"ehsm-kms dkeyserver audit v1\x00"
GENESIS = "00" * 32
AUDIT_FILE = "audit.jsonl"
HEAD_FILE = "audit.head"
MAX_LINE = 64 * 1024


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def record_hash(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(_DOMAIN + _canonical(body)).hexdigest()


class ReleaseAudit:
    """Appends records to ``<dir>/audit.jsonl``; safe from several threads (one lock)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / AUDIT_FILE
        self.head_path = Path(directory) / HEAD_FILE
        self._lock = threading.Lock()
        self._seq, self._prev = self._last()

    def _last(self) -> tuple[int, str]:
        last: dict[str, Any] | None = None
        with contextlib.suppress(FileNotFoundError):
            for record in _records(self.path):
                last = record
        if last is None:
            return 0, GENESIS
        return int(last["seq"]), str(last["hash"])

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            record: dict[str, Any] = {
                "seq": self._seq + 1,
                "time_ms": int(time.time() * 1000),
                "event": event,
                **fields,
                "prev": self._prev,
            }
            record["hash"] = record_hash(record)
            line = _canonical(record) + b"\n"
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._write_head(record["seq"], record["hash"])
            except OSError as exc:
                raise errors.InternalError(f"cannot write the release audit {self.path}: {exc.strerror}") from None
            self._seq, self._prev = record["seq"], record["hash"]
            return record

    def _write_head(self, seq: int, digest: str) -> None:
        tmp = self.head_path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(_canonical({"seq": seq, "hash": digest}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.head_path)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if len(line) > MAX_LINE:
                raise ValueError(f"line {number} is too long")
            doc = json.loads(line)
            if not isinstance(doc, dict):
                raise ValueError(f"line {number} is not a JSON object")
            yield doc


@dataclass
class AuditReport:
    records: int = 0
    last_seq: int = 0
    breaks: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.breaks


def verify_audit(directory: Path) -> AuditReport:
    """Check every record's hash and link, and the head; the report lists every break found."""
    report = AuditReport()
    path, head_path = Path(directory) / AUDIT_FILE, Path(directory) / HEAD_FILE
    prev, expected = GENESIS, 1
    try:
        for record in _records(path):
            report.records += 1
            seq = record.get("seq")
            if not isinstance(seq, int):
                report.breaks.append(f"record {report.records}: no sequence number")
                continue
            if seq != expected:
                report.breaks.append(f"seq {expected}: missing or out of order (found {seq})")
            elif record.get("prev") != prev:
                report.breaks.append(f"seq {seq}: does not follow the record before it")
            if record.get("hash") != record_hash(record):
                report.breaks.append(f"seq {seq}: changed (its hash does not match its content)")
            prev, expected = str(record.get("hash")), seq + 1
            report.last_seq = seq
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        report.breaks.append(f"unreadable: {exc}")
        return report
    try:
        head = json.loads(head_path.read_bytes())
    except FileNotFoundError:
        if report.records:
            report.breaks.append("the head file is missing")
        return report
    except (OSError, ValueError):
        report.breaks.append("the head file is unreadable")
        return report
    if head.get("seq") != report.last_seq or (report.records and head.get("hash") != prev):
        report.breaks.append(f"the head (seq {head.get('seq')}) does not match the last record (seq {report.last_seq})")
    return report


__all__ = ["AUDIT_FILE", "HEAD_FILE", "AuditReport", "ReleaseAudit", "record_hash", "verify_audit"]
