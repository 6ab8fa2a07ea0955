"""Intel DCAP quotes: SGX (``sgx-dcap``) and TDX (``tdx``) verification with dcap-qvl, and their policies.

A quote is accepted when all of these hold, in this order:

1. **Canonical framing** (ours, before any cryptography): quote version 3 (SGX) or 4 (SGX or TDX), ECDSA P-256
   attestation key, every length field exact, certification data of type 5 (the PCK chain, inside type 6 for
   version 4), the PCK chain in the PEM form Intel's quoting enclave writes (64-character lines, optionally
   NUL-terminated), nothing after the signature data but zero bytes. dcap-qvl alone accepts quotes that differ
   from a genuine one in bytes no signature covers (PEM line breaks, the embedded root certificate, length
   fields it recomputes, padding); we refuse them, so that *any* changed byte of a quote fails.
2. The chain's root certificate is the collateral's root (the Intel SGX Root CA that dcap-qvl pins).
3. **dcap-qvl** verifies the quote, its PCK chain and the collateral (TCB info, QE identity, CRLs) at the
   verification time, and reports the TCB status.
4. The report data, then the **policy**: MRENCLAVE / MRSIGNER / ISV product id / minimum ISV SVN / debug bit
   (SGX), MRTD / RTMRs / debug bit (TDX), and the TCB statuses the policy allows.

Collateral comes from a file (:class:`CollateralFile`: one collateral object, or a list of them chosen by the
quote's FMSPC and TEE type) or from a PCCS (:class:`Pccs`, fetched per quote). Time is injectable (``clock``):
the sample quotes' collateral has expired, so tests pin a time inside its validity.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import dcap_qvl  # type: ignore[import-untyped]

from ehsm_kms.provisioning.attest.base import Evidence, Policy, Verdict, check_kinds, check_report_data
from ehsm_kms.provisioning.attest.errors import (
    CollateralUnavailable,
    EvidenceInvalid,
    PolicyError,
    PolicyMismatch,
)

__all__ = [
    "QV_RESULTS",
    "CollateralFile",
    "CollateralSource",
    "Pccs",
    "SgxDcapVerifier",
    "SgxPolicy",
    "TdxPolicy",
    "TdxVerifier",
    "check_framing",
    "qv_result",
]

HEADER_SIZE = 48
SGX_BODY_SIZE = 384
TDX_BODY_SIZE = 584
TEE_SGX = 0x00000000
TEE_TDX = 0x00000081
ATT_KEY_ECDSA_P256 = 2
CERT_PCK_CHAIN = 5
CERT_QE_REPORT = 6
MAX_QUOTE_BYTES = 16 * 1024

# The DCAP status strings dcap-qvl reports, and the sgx_ql_qv_result_t integers the eHSM wire answers with.
QV_RESULTS: Mapping[str, int] = {
    "UpToDate": 0x0000,
    "ConfigurationNeeded": 0xA001,
    "OutOfDate": 0xA002,
    "OutOfDateConfigurationNeeded": 0xA003,
    "Revoked": 0xA005,
    "SWHardeningNeeded": 0xA007,
    "ConfigurationAndSWHardeningNeeded": 0xA008,
    "TDRelaunchAdvised": 0xA009,
    "TDRelaunchAdvisedConfigurationNeeded": 0xA00A,
}
QV_UNSPECIFIED = 0xA006
DEFAULT_ALLOWED_STATUS = frozenset({"UpToDate"})

_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)
_HEX = re.compile(r"[0-9a-f]+")


def qv_result(status: str) -> int:
    """The sgx_ql_qv_result_t of a DCAP status (UNSPECIFIED, 0xA006, for one we do not know)."""
    return QV_RESULTS.get(status, QV_UNSPECIFIED)


# ---------------------------------------------------------------- framing
@dataclass(frozen=True, slots=True)
class QuoteLayout:
    version: int
    tee_type: int
    pck_chain: tuple[bytes, ...]  # DER certificates, leaf first


def _canonical_pem(ders: Iterable[bytes]) -> bytes:
    out = []
    for der in ders:
        text = base64.b64encode(der)
        lines = [text[i : i + 64] for i in range(0, len(text), 64)]
        out.append(b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n")
    return b"".join(out)


def pem_certificates(text: bytes) -> list[bytes]:
    """The DER certificates of a PEM chain (lenient about layout: for collateral, which dcap-qvl verifies)."""
    ders = []
    for block in _PEM_BLOCK.findall(text):
        try:
            ders.append(base64.b64decode(b"".join(block.split()), validate=True))
        except (binascii.Error, ValueError):
            raise EvidenceInvalid("a certificate of the chain is not base64") from None
    return ders


def _strict_chain(pem: bytes) -> tuple[bytes, ...]:
    body = pem[:-1] if pem.endswith(b"\x00") else pem
    ders = pem_certificates(body)
    if len(ders) < 2 or _canonical_pem(ders) != body:
        raise EvidenceInvalid("the quote's PCK certificate chain is not in canonical PEM form")
    return tuple(ders)


class _Reader:
    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.pos, self.end = data, start, end

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > self.end:
            raise EvidenceInvalid("the quote is truncated or a length field is wrong")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u16(self) -> int:
        value: int = struct.unpack("<H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def cert_data(self, expected_type: int) -> _Reader:
        kind, size = self.u16(), self.u32()
        if kind != expected_type:
            raise EvidenceInvalid(f"certification data of type {kind}, expected {expected_type}")
        start = self.pos
        self.take(size)
        if self.pos != self.end:
            raise EvidenceInvalid("the certification data does not end where the signature data ends")
        return _Reader(self.data, start, self.end)


def _qe_report_and_chain(r: _Reader) -> bytes:
    r.take(SGX_BODY_SIZE + 64)  # the QE's report and the PCK's signature over it
    r.take(r.u16())  # QE authentication data (hashed into the QE report)
    chain = r.cert_data(CERT_PCK_CHAIN)
    return chain.take(chain.end - chain.pos)


def check_framing(quote: bytes) -> QuoteLayout:
    """The quote's layout if it is in canonical form (module docstring, step 1); EvidenceInvalid otherwise."""
    if not HEADER_SIZE <= len(quote) <= MAX_QUOTE_BYTES:
        raise EvidenceInvalid("the quote's length is not that of a DCAP quote")
    version, key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if key_type != ATT_KEY_ECDSA_P256:
        raise EvidenceInvalid(f"attestation key type {key_type} is not ECDSA P-256")
    if version == 3 and tee_type == TEE_SGX:
        body = SGX_BODY_SIZE
    elif version == 4 and tee_type in (TEE_SGX, TEE_TDX):
        body = SGX_BODY_SIZE if tee_type == TEE_SGX else TDX_BODY_SIZE
    else:
        raise EvidenceInvalid(f"quote version {version} with TEE type {tee_type:#x} is not supported")
    head = _Reader(quote, HEADER_SIZE + body, len(quote))
    sig_len = head.u32()
    start = head.pos
    head.take(sig_len)
    if quote[head.pos :].strip(b"\x00"):
        raise EvidenceInvalid("the quote has bytes after its signature data")
    r = _Reader(quote, start, start + sig_len)
    r.take(64 + 64)  # the ECDSA signature over header and body, and the attestation key
    pem = _qe_report_and_chain(r if version == 3 else r.cert_data(CERT_QE_REPORT))
    return QuoteLayout(version, tee_type, _strict_chain(pem))


# ---------------------------------------------------------------- collateral
class CollateralSource(Protocol):
    def collateral(self, quote: bytes) -> dcap_qvl.QuoteCollateralV3:
        """The collateral to verify ``quote`` with; CollateralUnavailable when there is none."""


def _tcb_key(collateral: dcap_qvl.QuoteCollateralV3) -> tuple[str, str]:
    try:
        info = json.loads(collateral.tcb_info)
    except ValueError:
        return ("", "")
    return (str(info.get("fmspc", "")).upper(), str(info.get("id", "SGX")).upper())


class CollateralFile:
    """Collateral from a JSON file in dcap-qvl's form (``QuoteCollateralV3.to_json``): one object, or a list.

    With a list, the quote's FMSPC and TEE type pick the entry. The file is read once, on first use.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._entries: list[dcap_qvl.QuoteCollateralV3] | None = None
        self._lock = threading.Lock()

    def _load(self) -> list[dcap_qvl.QuoteCollateralV3]:
        with self._lock:
            if self._entries is None:
                try:
                    doc = json.loads(self.path.read_text(encoding="utf-8"))
                    items = doc if isinstance(doc, list) else [doc]
                    self._entries = [dcap_qvl.QuoteCollateralV3.from_json(json.dumps(item)) for item in items]
                except (OSError, ValueError) as exc:
                    err = CollateralUnavailable(f"the collateral file {self.path} cannot be used")
                    err.add_note(f"{type(exc).__name__}: {exc}")
                    raise err from None
            return self._entries

    def collateral(self, quote: bytes) -> dcap_qvl.QuoteCollateralV3:
        entries = self._load()
        if len(entries) == 1:
            return entries[0]
        try:
            parsed = dcap_qvl.parse_quote(quote)
            key = (parsed.fmspc().upper(), "TDX" if parsed.is_tdx() else "SGX")
        except ValueError:
            raise EvidenceInvalid("the quote cannot be parsed") from None
        for entry in entries:
            if _tcb_key(entry) == key:
                return entry
        raise CollateralUnavailable(f"the collateral file has no collateral for FMSPC {key[0]} ({key[1]})")


class Pccs:
    """Collateral from a PCCS (or Intel's PCS) at ``url``, fetched for each quote (production; not run here).

    Called from a worker thread (the verifiers are synchronous): the fetch runs on an event loop of its own.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def collateral(self, quote: bytes) -> dcap_qvl.QuoteCollateralV3:
        async def fetch() -> dcap_qvl.QuoteCollateralV3:
            return await dcap_qvl.get_collateral(self.url, quote)

        try:
            return asyncio.run(fetch())
        except ValueError as exc:
            err = CollateralUnavailable(f"the PCCS at {self.url} gave no collateral for this quote")
            err.add_note(str(exc)[:500])
            raise err from None


# ---------------------------------------------------------------- verification
def _unix_now() -> int:
    return int(time.time())


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


class _DcapVerifier:
    """Shared by the SGX and TDX verifiers: steps 1-3 of the module docstring (:meth:`appraise`)."""

    kind: ClassVar[str]
    _tee_type: ClassVar[int]

    def __init__(self, collateral: CollateralSource, *, clock: Callable[[], int] = _unix_now) -> None:
        self.collateral = collateral
        self.clock = clock

    def appraise(self, quote: bytes) -> Verdict:
        """Whether the quote is genuine, and what it measures; no report data or policy check."""
        layout = check_framing(quote)
        if layout.tee_type != self._tee_type:
            raise EvidenceInvalid(f"not a {self.kind} quote")
        collateral = self.collateral.collateral(quote)
        roots = pem_certificates(collateral.tcb_info_issuer_chain.encode("ascii", "replace"))
        if not roots or layout.pck_chain[-1] != roots[-1]:
            raise EvidenceInvalid("the quote's root certificate is not the collateral's root")
        try:
            report = json.loads(dcap_qvl.verify(quote, collateral, self.clock()).to_json())
        except ValueError as exc:
            raise EvidenceInvalid(f"the quote does not verify: {_reason(exc)}") from None
        status = str(report.get("status", ""))
        details: dict[str, Any] = {
            "advisory_ids": list(report.get("advisory_ids", [])),
            "qv_result": qv_result(status),
            "quote_version": layout.version,
        }
        return self._verdict(report.get("report", {}), status, details)

    def verify(self, evidence: Evidence, expected_report_data: bytes, policy: Policy) -> Verdict:
        check_kinds(evidence, self.kind, policy)
        verdict = self.appraise(evidence.data)
        check_report_data(verdict.report_data, expected_report_data)
        policy.check(verdict)
        return verdict

    def _verdict(self, body: Mapping[str, Any], status: str, details: dict[str, Any]) -> Verdict:
        raise NotImplementedError


def _hex_field(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise EvidenceInvalid(f"the verified report has no {name}")
    return value


class SgxDcapVerifier(_DcapVerifier):
    kind = "sgx-dcap"
    _tee_type = TEE_SGX

    def _verdict(self, report: Mapping[str, Any], status: str, details: dict[str, Any]) -> Verdict:
        body = report.get("SgxEnclave")
        if not isinstance(body, Mapping):
            raise EvidenceInvalid("the verified report is not an SGX enclave report")
        attributes = bytes.fromhex(_hex_field(body, "attributes"))
        measurements = {
            "mr_enclave": _hex_field(body, "mr_enclave"),
            "mr_signer": _hex_field(body, "mr_signer"),
            "isv_prod_id": str(int(body.get("isv_prod_id", -1))),
            "isv_svn": str(int(body.get("isv_svn", -1))),
            "debug": "true" if attributes[0] & 0x02 else "false",
        }
        report_data = bytes.fromhex(_hex_field(body, "report_data"))
        return Verdict(self.kind, status, measurements, report_data, details)


class TdxVerifier(_DcapVerifier):
    kind = "tdx"
    _tee_type = TEE_TDX

    def _verdict(self, report: Mapping[str, Any], status: str, details: dict[str, Any]) -> Verdict:
        body = report.get("TD10") or report.get("TD15")
        if not isinstance(body, Mapping):
            raise EvidenceInvalid("the verified report is not a TD report")
        td_attributes = bytes.fromhex(_hex_field(body, "td_attributes"))
        measurements = {
            name: _hex_field(body, name)
            for name in ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3", "mr_config_id", "mr_owner", "mr_seam")
        }
        measurements["debug"] = "true" if td_attributes[0] & 0x01 else "false"
        report_data = bytes.fromhex(_hex_field(body, "report_data"))
        return Verdict(self.kind, status, measurements, report_data, details)


# ---------------------------------------------------------------- policies
def _digests(doc: Mapping[str, Any], name: str, size: int) -> frozenset[str]:
    raw = doc.get(name, [])
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise PolicyError(f"policy field {name} is a hex string or a list of them")
    out = frozenset(v.lower() for v in values)
    for value in out:
        if len(value) != size * 2 or not _HEX.fullmatch(value):
            raise PolicyError(f"policy field {name}: {value!r} is not {size} bytes of hex")
    return out


def _statuses(doc: Mapping[str, Any]) -> frozenset[str]:
    raw = doc.get("allowed_status", sorted(DEFAULT_ALLOWED_STATUS))
    if not isinstance(raw, list) or not all(isinstance(v, str) and v in QV_RESULTS for v in raw):
        raise PolicyError(f"allowed_status is a list of DCAP statuses: {', '.join(QV_RESULTS)}")
    return frozenset(raw)


def _optional_int(doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
        raise PolicyError(f"policy field {name} is an integer 0..65535")
    return value


def _check_status(allowed: frozenset[str] | None, verdict: Verdict) -> None:
    if allowed is not None and verdict.status not in allowed:
        raise PolicyMismatch(f"the TCB status {verdict.status} is not allowed by the policy")


def _check_debug(allow_debug: bool, verdict: Verdict) -> None:
    if not allow_debug and verdict.measurements.get("debug") != "false":
        raise PolicyMismatch("a debug enclave or TD is not allowed by the policy")


@dataclass(frozen=True, slots=True)
class SgxPolicy:
    """The SGX measurements a verifier accepts. At least one MRENCLAVE or MRSIGNER must be pinned.

    ``allowed_status`` None accepts any TCB status (the caller reads the status itself, as VerifyQuote's
    clients do); the default accepts only UpToDate.
    """

    kind: ClassVar[str] = "sgx-dcap"
    mr_enclave: frozenset[str] = frozenset()
    mr_signer: frozenset[str] = frozenset()
    isv_prod_id: int | None = None
    min_isv_svn: int | None = None
    allow_debug: bool = False
    allowed_status: frozenset[str] | None = DEFAULT_ALLOWED_STATUS

    def __post_init__(self) -> None:
        if not self.mr_enclave and not self.mr_signer:
            raise PolicyError("an sgx-dcap policy pins at least one mr_enclave or mr_signer")

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> SgxPolicy:
        return cls(
            mr_enclave=_digests(doc, "mr_enclave", 32),
            mr_signer=_digests(doc, "mr_signer", 32),
            isv_prod_id=_optional_int(doc, "isv_prod_id"),
            min_isv_svn=_optional_int(doc, "min_isv_svn"),
            allow_debug=bool(doc.get("allow_debug", False)),
            allowed_status=_statuses(doc),
        )

    def check(self, verdict: Verdict) -> None:
        m = verdict.measurements
        if self.mr_enclave and m.get("mr_enclave") not in self.mr_enclave:
            raise PolicyMismatch("the MRENCLAVE is not allowed by the policy")
        if self.mr_signer and m.get("mr_signer") not in self.mr_signer:
            raise PolicyMismatch("the MRSIGNER is not allowed by the policy")
        if self.isv_prod_id is not None and m.get("isv_prod_id") != str(self.isv_prod_id):
            raise PolicyMismatch("the ISV product id is not the policy's")
        if self.min_isv_svn is not None and int(m.get("isv_svn", "-1")) < self.min_isv_svn:
            raise PolicyMismatch("the ISV SVN is below the policy's minimum")
        _check_debug(self.allow_debug, verdict)
        _check_status(self.allowed_status, verdict)


@dataclass(frozen=True, slots=True)
class TdxPolicy:
    """The TD measurements a verifier accepts: MRTD (required) and, for each RTMR given, its exact value."""

    kind: ClassVar[str] = "tdx"
    mr_td: frozenset[str] = frozenset()
    rtmrs: Mapping[int, str] = field(default_factory=dict)
    allow_debug: bool = False
    allowed_status: frozenset[str] | None = DEFAULT_ALLOWED_STATUS

    def __post_init__(self) -> None:
        if not self.mr_td:
            raise PolicyError("a tdx policy pins at least one mr_td")
        if any(index not in range(4) for index in self.rtmrs):
            raise PolicyError("RTMRs are numbered 0 to 3")

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> TdxPolicy:
        raw = doc.get("rtmr", {})
        if not isinstance(raw, Mapping):
            raise PolicyError("policy field rtmr is a table of index = hex value")
        rtmrs: dict[int, str] = {}
        for key, value in raw.items():
            if not str(key).isdigit() or not isinstance(value, str):
                raise PolicyError(f"RTMR {key!r}: the index is a number and the value one hex string")
            (rtmrs[int(key)],) = _digests({"rtmr": value}, "rtmr", 48)
        return cls(
            mr_td=_digests(doc, "mr_td", 48),
            rtmrs=rtmrs,
            allow_debug=bool(doc.get("allow_debug", False)),
            allowed_status=_statuses(doc),
        )

    def check(self, verdict: Verdict) -> None:
        m = verdict.measurements
        if m.get("mr_td") not in self.mr_td:
            raise PolicyMismatch("the MRTD is not allowed by the policy")
        for index, value in sorted(self.rtmrs.items()):
            if m.get(f"rt_mr{index}") != value:
                raise PolicyMismatch(f"RTMR{index} is not the policy's")
        _check_debug(self.allow_debug, verdict)
        _check_status(self.allowed_status, verdict)
