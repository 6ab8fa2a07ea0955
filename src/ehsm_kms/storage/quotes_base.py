"""Quote policies (the remote-attestation actions' UploadQuotePolicy / GetQuotePolicy), for both backends.

A policy belongs to one app: it is found by (appid, policyId), so no app can read or use another app's policy.
``mr_enclave`` and ``mr_signer`` are kept exactly as the client sent them (the contract checks only that they
are 64 characters, not that they are hex); the backends store them as UTF-8 bytes so that every such string,
NUL included, comes back unchanged. The schema is ``migrations/0005_quote_policies``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ehsm_kms.storage.records import ReplayEntry

__all__ = ["QUOTE_QUERIES", "QuotePolicyRecord", "QuoteQueries", "QuoteStore", "policy_from_row", "policy_row"]


@dataclass(frozen=True, slots=True)
class QuotePolicyRecord:
    policy_id: str
    appid: str
    mr_enclave: str
    mr_signer: str
    created_ms: int


class QuoteStore(Protocol):
    """What the remote-attestation actions need from persistence. Every method commits before it returns."""

    async def put_quote_policy(self, rec: QuotePolicyRecord, *, replay: ReplayEntry | None = None) -> None:
        """Insert a new policy (with the request's replay record, in one transaction); RecordExists for an
        existing policy_id."""

    async def get_quote_policy(self, appid: str, policy_id: str) -> QuotePolicyRecord | None:
        """The app's policy of that id; None when the app has none (another app's policy included)."""


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def policy_row(rec: QuotePolicyRecord) -> tuple[object, ...]:
    return (rec.policy_id, rec.appid, _text(rec.mr_enclave), _text(rec.mr_signer), rec.created_ms)


def policy_from_row(row: Sequence[Any]) -> QuotePolicyRecord:
    return QuotePolicyRecord(
        policy_id=row[0],
        appid=row[1],
        mr_enclave=bytes(row[2]).decode("utf-8", "surrogatepass"),
        mr_signer=bytes(row[3]).decode("utf-8", "surrogatepass"),
        created_ms=int(row[4]),
    )


@dataclass(frozen=True, slots=True)
class QuoteQueries:
    """The statements both SQL backends run, with ``?`` placeholders (as ``base.Queries``)."""

    insert: str = (
        "INSERT INTO quote_policies (policy_id, appid, mr_enclave, mr_signer, created_ms) VALUES (?, ?, ?, ?, ?)"
    )
    get: str = (
        "SELECT policy_id, appid, mr_enclave, mr_signer, created_ms FROM quote_policies "
        "WHERE appid = ? AND policy_id = ?"
    )

    def with_placeholder(self, mark: str) -> QuoteQueries:
        return QuoteQueries(insert=self.insert.replace("?", mark), get=self.get.replace("?", mark))


QUOTE_QUERIES: Final = QuoteQueries()
