"""The one interface of attestation: evidence, its provider and verifier, policies, and the verdict.

A **provider** runs where the TEE is and makes :class:`Evidence` that binds 64 bytes of report data chosen by the
caller; a **verifier** checks evidence against the report data it expects and a :class:`Policy` of allowed
measurements, and returns a :class:`Verdict` or raises (:mod:`.errors`). Every kind (``tpm2``, ``sgx-dcap``,
``tdx``, ``none``) implements the same two protocols, so the dkeyserver, the dkeycache and attested enrollment
never look inside evidence themselves.

Report data (64 bytes, :func:`bind_report_data`)::

    report_data = SHA-256(purpose || 0x00 || nonce) || SHA-256(channel public key)    (32 zero bytes: no channel)

``purpose`` keeps evidence made for one protocol from being accepted by another; ``nonce`` is the verifier's
fresh challenge; the channel key is the DER SubjectPublicKeyInfo of the TLS (or key-agreement) key that the
evidence vouches for, so evidence taken from one connection is refused on another.

The wire form of evidence (:meth:`Evidence.encode`) is a JSON object
``{"v": 1, "kind": ..., "data": <base64>, "claims": {...}}``; ``claims`` carry what the verifier needs beside
``data`` (for ``tpm2``: the signature, the attestation key's public area and the PCR values). Claims are the
provider's word only: a verifier believes nothing in them that the signed ``data`` does not vouch for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from ehsm_kms.provisioning.attest.errors import EvidenceInvalid, KindRefused, ReportDataMismatch

REPORT_DATA_SIZE = 64
MAX_EVIDENCE_BYTES = 64 * 1024
KINDS = ("tpm2", "sgx-dcap", "tdx", "none")

PURPOSE_GENERATE_QUOTE = "ehsm-kms GenerateQuote"
"""The purpose of the report data of the GenerateQuote action (its ``challenge`` is the nonce)."""


def bind_report_data(nonce: bytes, channel_key: bytes | None = None, *, purpose: str) -> bytes:
    """The 64 bytes of report data that bind ``nonce`` and (optionally) a channel public key for ``purpose``."""
    if not purpose or "\x00" in purpose:
        raise ValueError("the purpose is a non-empty text without NUL")
    first = hashlib.sha256(purpose.encode("utf-8") + b"\x00" + nonce).digest()
    second = hashlib.sha256(channel_key).digest() if channel_key is not None else bytes(32)
    return first + second


def check_report_data(found: bytes, expected: bytes) -> None:
    """Constant-time comparison of the evidence's report data with the expected one."""
    if len(expected) != REPORT_DATA_SIZE:
        raise ValueError(f"expected report data is {REPORT_DATA_SIZE} bytes")
    if not hmac.compare_digest(found, expected):
        raise ReportDataMismatch()


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a provider made: its kind, the signed bytes (a quote), and the provider's claims beside them."""

    kind: str
    data: bytes
    claims: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Evidence(kind={self.kind!r}, data=<{len(self.data)} bytes>, claims={sorted(self.claims)})"

    def encode(self) -> bytes:
        doc = {"v": 1, "kind": self.kind, "data": base64.b64encode(self.data).decode("ascii"), "claims": self.claims}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> Evidence:
        """Evidence from its wire form; EvidenceInvalid for anything malformed or larger than 64 KiB."""
        if len(raw) > MAX_EVIDENCE_BYTES:
            raise EvidenceInvalid("the evidence is too large")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise EvidenceInvalid("the evidence is not JSON") from None
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise EvidenceInvalid("the evidence is not version 1")
        kind, data, claims = doc.get("kind"), doc.get("data"), doc.get("claims", {})
        if kind not in KINDS or not isinstance(data, str) or not isinstance(claims, dict):
            raise EvidenceInvalid("the evidence has no known kind, data or claims")
        try:
            payload = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise EvidenceInvalid("the evidence data is not base64") from None
        return cls(kind, payload, claims)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What verified evidence proves.

    ``measurements``: hex digests and numbers that the policy was checked against (``mr_enclave``, ``mr_td``,
    ``pcr.sha256.7``, ``ak`` ...); ``status``: the TCB status of DCAP evidence ("UpToDate",
    "SWHardeningNeeded" ...), "OK" for tpm2, "unattested" for none; ``details``: everything else worth an audit
    line (advisory ids, the TPM's reset count).
    """

    kind: str
    status: str
    measurements: Mapping[str, str]
    report_data: bytes
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def attested(self) -> bool:
        return self.kind != "none"

    def summary(self) -> str:
        """One line for an audit record: the kind, the status and every measurement."""
        parts = [f"{k}={v}" for k, v in sorted(self.measurements.items())]
        return " ".join([f"kind={self.kind}", f"status={self.status}", *parts])


class Policy(Protocol):
    """What a verifier accepts, for one kind. Built from TOML/JSON by :func:`.policy.load_policy`."""

    kind: ClassVar[str]

    def check(self, verdict: Verdict) -> None:
        """Raise PolicyMismatch unless the verified measurements and status are allowed."""


@runtime_checkable
class Provider(Protocol):
    """Makes evidence where the TEE is."""

    kind: ClassVar[str]

    def evidence(self, report_data: bytes) -> Evidence:
        """Evidence binding exactly these 64 bytes; ProviderUnavailable when the TEE cannot make it."""


@runtime_checkable
class Verifier(Protocol):
    """Checks evidence of one kind."""

    kind: ClassVar[str]

    def verify(self, evidence: Evidence, expected_report_data: bytes, policy: Policy) -> Verdict:
        """The verdict, or EvidenceInvalid / ReportDataMismatch / PolicyMismatch / KindRefused."""


def check_kinds(evidence: Evidence, verifier_kind: str, policy: Policy) -> None:
    if evidence.kind != verifier_kind or policy.kind != verifier_kind:
        raise KindRefused(f"{evidence.kind} evidence cannot be checked by a {verifier_kind} verifier or policy")


def require_report_data(report_data: bytes) -> bytes:
    if len(report_data) != REPORT_DATA_SIZE:
        raise ValueError(f"report data is exactly {REPORT_DATA_SIZE} bytes")
    return bytes(report_data)


def as_hex_map(values: Mapping[str, bytes]) -> dict[str, str]:
    return {k: v.hex() for k, v in values.items()}
