"""Checking the audit log's hash chain (``ehsm-kms admin verify-audit``) and reading it page by page (export)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from ehsm_kms.storage.audit_base import AuditRecord, ChainBreak, ChainReport, ChainVerifier

if TYPE_CHECKING:
    from ehsm_kms.storage.base import Store

_PAGE = 1000


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


def dangling_lines(report: ChainReport) -> list[str]:
    """What ``verify-audit`` says about request records without an outcome (not a break: the chain is whole)."""
    if not report.dangling:
        return []
    head = (
        f"{len(report.dangling)} request record(s) without an outcome record (the node stopped between the two, "
        "the outcome could not be written, or the request was still running when the log was read):"
    )
    return [head, *(f"  {d}" for d in report.dangling)]
