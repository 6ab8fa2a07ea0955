"""TPM 2.0 evidence (``tpm2``): a quote over chosen PCRs, signed by an attestation key tied to the EK.

**Keys.** The provider makes two primary keys in the endorsement hierarchy: the EK (the TCG template,
``EK-RSA2048`` by default, so it matches the TPM's EK certificate) and the AK, a restricted ECDSA P-256 signing
key (fixedTPM, fixedParent, sensitiveDataOrigin). Primary keys are derived from the TPM's endorsement seed, so
the same TPM makes the same EK and AK after every restart, and a verifier's pin stays valid. A restricted key
signs only what the TPM itself generated, so it cannot sign a forged quote.

**Credential activation** ties an AK to an EK: the verifier checks that the EK is trusted by its policy, makes a
credential (``TPM2_MakeCredential`` in software: a random secret sealed to the EK and bound to the AK's name)
and the prover's TPM opens it with ``TPM2_ActivateCredential``, which it does only if it holds both the EK's
private key and a key with that exact name. A correct answer is recorded (:class:`Activations`): from then on
quotes by that AK count as quotes of that EK's TPM.

**Evidence.** ``data`` = the quote's TPMS_ATTEST (qualifying data = the 64 bytes of report data); ``claims`` =
``signature`` (TPMT_SIGNATURE, hex), ``ak_public`` (TPMT_PUBLIC, hex), ``ek_public`` (hex) and ``pcrs``
(``{"sha256": {"0": hex, ...}}``). The verifier checks the AK (trusted itself, or activated under a trusted EK),
the signature, the magic and type, the report data, that the claimed PCR values hash to the quoted PCR digest,
and that they are the policy's.

**Names.** A key's TPM name is ``nameAlg || H(TPMT_PUBLIC)`` (what ``tpm2_readpublic`` prints as ``name``);
policies pin AKs and EKs by name or by PEM public key.

The verifier needs tpm2-pytss for parsing and MakeCredential; it is imported only when a tpm2 object is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import struct
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ehsm_kms.core import attest_crypto
from ehsm_kms.provisioning.attest.base import (
    Evidence,
    Policy,
    Verdict,
    check_kinds,
    check_report_data,
    require_report_data,
)
from ehsm_kms.provisioning.attest.errors import (
    EvidenceInvalid,
    KindRefused,
    PolicyError,
    PolicyMismatch,
    ProviderUnavailable,
)

__all__ = [
    "Activations",
    "CredentialChallenge",
    "MemoryActivations",
    "PendingActivation",
    "Tpm2Identity",
    "Tpm2Policy",
    "Tpm2Provider",
    "Tpm2Verifier",
    "TrustedKey",
    "key_name",
    "parse_pcr_spec",
]

_HASH_ALGS = {0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
_BANKS = {name: alg for alg, name in _HASH_ALGS.items()}
_CURVES = {0x0003: "p256", 0x0004: "p384", 0x0005: "p521"}
ALG_RSA, ALG_ECC = 0x0001, 0x0023
ALG_RSASSA, ALG_RSAPSS, ALG_ECDSA = 0x0014, 0x0016, 0x0018
TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
FIXED_TPM, FIXED_PARENT, SENSITIVE_DATA_ORIGIN = 1 << 1, 1 << 4, 1 << 5
RESTRICTED, DECRYPT, SIGN = 1 << 16, 1 << 17, 1 << 18
AK_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN
EK_REQUIRED = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | DECRYPT
DEFAULT_PCRS = "sha256:0,1,2,3,4,5,6,7"
_TCTI_LAYER = 10  # TSS2_RC layer of the transport


def _types() -> Any:
    """tpm2-pytss's types, imported on first use (it loads cryptography; a KMS server that does not use tpm2
    never imports it)."""
    from tpm2_pytss import types  # type: ignore[import-untyped]

    return types


def parse_pcr_spec(spec: str) -> dict[str, list[int]]:
    """``"sha256:0,1,2+sha384:0"`` (tpm2-tools' form) as ``{bank: [indexes]}``."""
    out: dict[str, list[int]] = {}
    for part in spec.split("+"):
        bank, _, indexes = part.strip().partition(":")
        if bank not in _BANKS or not indexes:
            raise PolicyError(f"PCR selection {part!r}: banks are {', '.join(_BANKS)}, then ':' and indexes")
        try:
            numbers = sorted({int(i) for i in indexes.split(",")})
        except ValueError:
            raise PolicyError(f"PCR selection {part!r}: indexes are numbers") from None
        if not numbers or numbers[0] < 0 or numbers[-1] > 23:
            raise PolicyError(f"PCR selection {part!r}: indexes are 0..23")
        out[bank] = numbers
    return out


def key_name(public_area: bytes) -> bytes:
    """The TPM name of a key from its marshalled TPMT_PUBLIC."""
    if len(public_area) < 4:
        raise EvidenceInvalid("a TPM public area is too short")
    (name_alg,) = struct.unpack_from(">H", public_area, 2)
    hash_name = _HASH_ALGS.get(name_alg)
    if hash_name is None:
        raise EvidenceInvalid(f"name algorithm {name_alg:#06x} is not accepted")
    return public_area[2:4] + hashlib.new(hash_name, public_area).digest()


def _unhex(claims: Mapping[str, Any], name: str) -> bytes:
    value = claims.get(name)
    try:
        return bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        return b""


@dataclass(frozen=True, slots=True)
class _Public:
    raw: bytes
    name: bytes
    attributes: int
    numbers: attest_crypto.RsaPublic | attest_crypto.EcPublic
    scheme: int  # the key's own signing scheme (TPM_ALG_NULL = any)


def _public(raw: bytes, what: str) -> _Public:
    types = _types()
    try:
        pub, used = types.TPMT_PUBLIC.unmarshal(raw)
    except Exception:
        raise EvidenceInvalid(f"the {what} public area cannot be parsed") from None
    if used != len(raw):
        raise EvidenceInvalid(f"the {what} public area has trailing bytes")
    try:
        if int(pub.type) == ALG_ECC:
            detail = pub.parameters.eccDetail
            curve = _CURVES.get(int(detail.curveID))
            if curve is None:
                raise EvidenceInvalid(f"the {what} curve is not accepted")
            point = pub.unique.ecc
            numbers: attest_crypto.RsaPublic | attest_crypto.EcPublic = attest_crypto.EcPublic(
                curve, int.from_bytes(bytes(point.x), "big"), int.from_bytes(bytes(point.y), "big")
            )
            scheme = int(detail.scheme.scheme)
        elif int(pub.type) == ALG_RSA:
            detail = pub.parameters.rsaDetail
            exponent = int(detail.exponent) or 65537
            numbers = attest_crypto.RsaPublic(int.from_bytes(bytes(pub.unique.rsa), "big"), exponent)
            scheme = int(detail.scheme.scheme)
        else:
            raise EvidenceInvalid(f"the {what} is neither an RSA nor an ECC key")
    except (AttributeError, TypeError, ValueError):
        raise EvidenceInvalid(f"the {what} public area cannot be read") from None
    return _Public(raw, key_name(raw), int(pub.objectAttributes), numbers, scheme)


# ---------------------------------------------------------------- policy
@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A key a policy trusts: by TPM name, or by public key (from PEM)."""

    name: bytes | None = None
    numbers: attest_crypto.RsaPublic | attest_crypto.EcPublic | None = None

    @classmethod
    def parse(cls, text: str) -> TrustedKey:
        if text.lstrip().startswith("-----BEGIN"):
            try:
                return cls(numbers=attest_crypto.public_from_pem(text.encode("ascii")))
            except (ValueError, UnicodeEncodeError) as exc:
                raise PolicyError(f"a trusted key: {exc}") from None
        try:
            name = bytes.fromhex(text)
        except ValueError:
            raise PolicyError(f"a trusted key {text[:20]!r}... is neither a TPM name (hex) nor a PEM key") from None
        if len(name) < 2 or _HASH_ALGS.get(int.from_bytes(name[:2], "big")) is None:
            raise PolicyError("a trusted TPM name starts with its name algorithm (000b for SHA-256)")
        return cls(name=name)

    def matches(self, key: _Public) -> bool:
        if self.name is not None:
            return hmac.compare_digest(self.name, key.name)
        return self.numbers == key.numbers


@dataclass(frozen=True, slots=True)
class Tpm2Policy:
    """Expected PCR values, and the AKs (or EKs, through credential activation) that may sign quotes."""

    kind: ClassVar[str] = "tpm2"
    pcrs: Mapping[str, Mapping[int, str]]
    trusted_aks: tuple[TrustedKey, ...] = ()
    trusted_eks: tuple[TrustedKey, ...] = ()

    def __post_init__(self) -> None:
        if not any(self.pcrs.values()):
            raise PolicyError("a tpm2 policy expects at least one PCR value")
        if not self.trusted_aks and not self.trusted_eks:
            raise PolicyError("a tpm2 policy trusts at least one AK or EK")
        for bank, values in self.pcrs.items():
            size = hashlib.new(bank).digest_size if bank in _BANKS else 0
            if not size or any(len(v) != 2 * size or v != v.lower() for v in values.values()):
                raise PolicyError(f"PCR values of bank {bank} are lower-case hex of its digest size")

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> Tpm2Policy:
        banks = doc.get("pcrs", {})
        if not isinstance(banks, Mapping):
            raise PolicyError("policy field pcrs is a table per bank: [pcrs.sha256] 0 = 'hex'")
        pcrs: dict[str, dict[int, str]] = {}
        for bank, values in banks.items():
            if not isinstance(values, Mapping) or not all(
                str(k).isdigit() and isinstance(v, str) for k, v in values.items()
            ):
                raise PolicyError(f"[pcrs.{bank}] maps PCR indexes to hex values")
            pcrs[str(bank)] = {int(k): v.lower() for k, v in values.items()}
        return cls(pcrs=pcrs, trusted_aks=_trusted(doc, "trusted_ak"), trusted_eks=_trusted(doc, "trusted_ek"))

    def trusts_ak(self, ak: _Public) -> bool:
        return any(t.matches(ak) for t in self.trusted_aks)

    def trusts_ek(self, ek: _Public) -> bool:
        return any(t.matches(ek) for t in self.trusted_eks)

    def check(self, verdict: Verdict) -> None:
        for bank, values in sorted(self.pcrs.items()):
            for index, expected in sorted(values.items()):
                found = verdict.measurements.get(f"pcr.{bank}.{index}")
                if found is None:
                    raise PolicyMismatch(f"PCR {bank}:{index} is not in the quote")
                if not hmac.compare_digest(found, expected):
                    raise PolicyMismatch(f"PCR {bank}:{index} does not have the policy's value")


def _trusted(doc: Mapping[str, Any], name: str) -> tuple[TrustedKey, ...]:
    raw = doc.get(name, [])
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise PolicyError(f"policy field {name} is a TPM name or PEM key, or a list of them")
    return tuple(TrustedKey.parse(v) for v in values)


# ---------------------------------------------------------------- credential activation
@dataclass(frozen=True, slots=True)
class Tpm2Identity:
    """What a prover shows before activation: its EK's and AK's public areas (marshalled TPMT_PUBLIC)."""

    ek_public: bytes
    ak_public: bytes

    def encode(self) -> bytes:
        return json.dumps({"ek_public": self.ek_public.hex(), "ak_public": self.ak_public.hex()}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Tpm2Identity:
        try:
            doc = json.loads(raw)
            return cls(bytes.fromhex(doc["ek_public"]), bytes.fromhex(doc["ak_public"]))
        except (ValueError, KeyError, TypeError):
            raise EvidenceInvalid("a TPM identity is two hex public areas") from None


@dataclass(frozen=True, slots=True)
class CredentialChallenge:
    """MakeCredential's output, sent to the prover: TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET, marshalled."""

    credential_blob: bytes
    encrypted_secret: bytes

    def encode(self) -> bytes:
        doc = {"credential_blob": self.credential_blob.hex(), "encrypted_secret": self.encrypted_secret.hex()}
        return json.dumps(doc).encode()

    @classmethod
    def decode(cls, raw: bytes) -> CredentialChallenge:
        try:
            doc = json.loads(raw)
            return cls(bytes.fromhex(doc["credential_blob"]), bytes.fromhex(doc["encrypted_secret"]))
        except (ValueError, KeyError, TypeError):
            raise EvidenceInvalid("a credential challenge is two hex blobs") from None


@dataclass(frozen=True, slots=True)
class PendingActivation:
    """The verifier's side of one activation; kept by the verifier, never sent."""

    ak_name: bytes
    ek_public: bytes
    secret: bytes = field(repr=False)


class Activations(Protocol):
    """Which AK was activated under which EK (public area). The dkeyserver may persist them."""

    def record(self, ak_name: bytes, ek_public: bytes) -> None: ...

    def ek_for(self, ak_name: bytes) -> bytes | None: ...


class MemoryActivations:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def record(self, ak_name: bytes, ek_public: bytes) -> None:
        with self._lock:
            self._data[bytes(ak_name)] = bytes(ek_public)

    def ek_for(self, ak_name: bytes) -> bytes | None:
        with self._lock:
            return self._data.get(bytes(ak_name))


def _check_attributes(key: _Public, required: int, forbidden: int, what: str) -> None:
    if key.attributes & required != required or key.attributes & forbidden:
        raise EvidenceInvalid(f"the {what} does not have the attributes of an {what} (fixedTPM, restricted ...)")


# ---------------------------------------------------------------- verifier
class Tpm2Verifier:
    kind: ClassVar[str] = "tpm2"

    def __init__(self, activations: Activations | None = None) -> None:
        self.activations: Activations = activations if activations is not None else MemoryActivations()

    def challenge(self, identity: Tpm2Identity, policy: Tpm2Policy) -> tuple[CredentialChallenge, PendingActivation]:
        """MakeCredential for an AK that claims to live in the TPM of a trusted EK."""
        ek = _public(identity.ek_public, "EK")
        ak = _public(identity.ak_public, "AK")
        _check_attributes(ek, EK_REQUIRED, SIGN, "EK")
        _check_attributes(ak, AK_REQUIRED, DECRYPT, "AK")
        if not policy.trusts_ek(ek):
            raise PolicyMismatch("the EK is not trusted by the policy")
        types = _types()
        from tpm2_pytss.utils import make_credential  # type: ignore[import-untyped]

        secret = os.urandom(32)
        ek_public, _ = types.TPMT_PUBLIC.unmarshal(ek.raw)
        blob, encrypted = make_credential(types.TPM2B_PUBLIC(publicArea=ek_public), secret, ak.name)
        challenge = CredentialChallenge(bytes(blob.marshal()), bytes(encrypted.marshal()))
        return challenge, PendingActivation(ak.name, ek.raw, secret)

    def complete(self, pending: PendingActivation, answer: bytes) -> None:
        """Record the AK as activated under the EK if ``answer`` is the credential's secret."""
        if not hmac.compare_digest(bytes(answer), pending.secret):
            raise EvidenceInvalid("credential activation failed: the AK is not in the TPM of the trusted EK")
        self.activations.record(pending.ak_name, pending.ek_public)

    def _trusted(self, ak: _Public, policy: Tpm2Policy) -> dict[str, str]:
        if policy.trusts_ak(ak):
            return {"ak": ak.name.hex()}
        ek_raw = self.activations.ek_for(ak.name)
        if ek_raw is not None:
            ek = _public(ek_raw, "EK")
            if policy.trusts_ek(ek):
                return {"ak": ak.name.hex(), "ek": ek.name.hex()}
        raise PolicyMismatch("the AK is neither trusted nor activated under a trusted EK")

    def verify(self, evidence: Evidence, expected_report_data: bytes, policy: Policy) -> Verdict:
        check_kinds(evidence, self.kind, policy)
        if not isinstance(policy, Tpm2Policy):
            raise KindRefused("a tpm2 verifier needs a Tpm2Policy")
        claims = evidence.claims
        ak = _public(_unhex(claims, "ak_public"), "AK")
        _check_attributes(ak, AK_REQUIRED, DECRYPT, "AK")
        hash_name = self._check_signature(ak, _unhex(claims, "signature"), evidence.data)
        attest = self._attest(evidence.data)
        check_report_data(bytes(attest.extraData), expected_report_data)
        measurements = self._trusted(ak, policy)
        measurements.update(_pcr_measurements(attest, claims.get("pcrs"), hash_name))
        clock = attest.clockInfo
        details = {
            "reset_count": int(clock.resetCount),
            "restart_count": int(clock.restartCount),
            "clock_ms": int(clock.clock),
            "safe": bool(clock.safe),
            "firmware_version": int(attest.firmwareVersion),
        }
        verdict = Verdict(self.kind, "OK", measurements, bytes(attest.extraData), details)
        policy.check(verdict)
        return verdict

    @staticmethod
    def _check_signature(ak: _Public, raw: bytes, message: bytes) -> str:
        types = _types()
        try:
            sig, used = types.TPMT_SIGNATURE.unmarshal(raw)
            alg = int(sig.sigAlg)
        except Exception:
            raise EvidenceInvalid("the quote's signature cannot be parsed") from None
        if used != len(raw) or (ak.scheme not in (0x0010, alg)):
            raise EvidenceInvalid("the quote's signature is not of the AK's scheme")
        try:
            if alg == ALG_ECDSA and isinstance(ak.numbers, attest_crypto.EcPublic):
                detail = sig.signature.ecdsa
                hash_name = _HASH_ALGS[int(detail.hash)]
                r = int.from_bytes(bytes(detail.signatureR), "big")
                s = int.from_bytes(bytes(detail.signatureS), "big")
                attest_crypto.verify_ecdsa(ak.numbers, hash_name, message, r, s)
            elif alg in (ALG_RSASSA, ALG_RSAPSS) and isinstance(ak.numbers, attest_crypto.RsaPublic):
                detail = sig.signature.rsassa if alg == ALG_RSASSA else sig.signature.rsapss
                hash_name = _HASH_ALGS[int(detail.hash)]
                scheme = "pkcs1" if alg == ALG_RSASSA else "pss"
                attest_crypto.verify_rsa(ak.numbers, scheme, hash_name, message, bytes(detail.sig))
            else:
                raise EvidenceInvalid("the quote's signature algorithm does not fit the AK")
        except KeyError:
            raise EvidenceInvalid("the quote's signature digest is not accepted") from None
        except attest_crypto.SignatureInvalid as exc:
            raise EvidenceInvalid(f"the quote's signature does not verify ({exc})") from None
        return hash_name

    @staticmethod
    def _attest(data: bytes) -> Any:
        types = _types()
        try:
            attest, used = types.TPMS_ATTEST.unmarshal(data)
            magic, kind = int(attest.magic), int(attest.type)
        except Exception:
            raise EvidenceInvalid("the quote cannot be parsed") from None
        if used != len(data) or magic != TPM_GENERATED_VALUE or kind != TPM_ST_ATTEST_QUOTE:
            raise EvidenceInvalid("the signed data is not a TPM-generated quote")
        return attest


def _selected(selection: Any) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for item in selection.pcrSelections[: int(selection.count)]:
        bank = _HASH_ALGS.get(int(item.hash))
        if bank is None:
            raise EvidenceInvalid(f"PCR bank {int(item.hash):#06x} is not accepted")
        bitmap = bytes(item.pcrSelect)[: int(item.sizeofSelect)]
        out += [(bank, i) for i in range(len(bitmap) * 8) if bitmap[i // 8] >> (i % 8) & 1]
    return out


def _pcr_measurements(attest: Any, claimed: Any, hash_name: str) -> dict[str, str]:
    """The claimed PCR values, once they are shown to be exactly what the quote's PCR digest covers."""
    selected = _selected(attest.attested.quote.pcrSelect)
    if not isinstance(claimed, Mapping):
        raise EvidenceInvalid("the evidence has no PCR values")
    values: dict[tuple[str, int], bytes] = {}
    for bank, table in claimed.items():
        if not isinstance(table, Mapping):
            raise EvidenceInvalid("PCR values are given per bank")
        for index, value in table.items():
            try:
                values[(str(bank), int(index))] = bytes.fromhex(value)
            except (TypeError, ValueError):
                raise EvidenceInvalid("a PCR value is not hex") from None
    if set(values) != set(selected):
        raise EvidenceInvalid("the PCR values given are not those the quote covers")
    digest = hashlib.new(hash_name, b"".join(values[k] for k in selected)).digest()
    if not hmac.compare_digest(digest, bytes(attest.attested.quote.pcrDigest)):
        raise EvidenceInvalid("the PCR values do not match the quote's PCR digest")
    return {f"pcr.{bank}.{index}": values[(bank, index)].hex() for bank, index in selected}


# ---------------------------------------------------------------- provider
def _connection_error(exc: Exception) -> bool:
    """Whether the connection to the TPM is lost (a TCTI error), rather than one command refused by the TPM."""
    rc = getattr(exc, "rc", None)
    return not isinstance(rc, int) or (rc >> 16) & 0xFF == _TCTI_LAYER


def _pcr_groups(selection: Mapping[str, list[int]]) -> Iterable[tuple[str, list[int]]]:
    for bank, indexes in selection.items():
        for start in range(0, len(indexes), 8):  # TPM2_PCR_Read returns at most 8 digests per call
            yield bank, indexes[start : start + 8]


class Tpm2Provider:
    """Evidence from a TPM through a TCTI (``device:/dev/tpmrm0``, ``swtpm:host=127.0.0.1,port=2321`` ...)."""

    kind: ClassVar[str] = "tpm2"

    def __init__(self, tcti: str, *, pcrs: str = DEFAULT_PCRS, ek_type: str = "EK-RSA2048") -> None:
        self.tcti = tcti
        self.selection = parse_pcr_spec(pcrs)
        self.pcr_spec = "+".join(f"{bank}:{','.join(map(str, idx))}" for bank, idx in self.selection.items())
        self.ek_type = ek_type
        self._lock = threading.Lock()
        self._ctx: Any = None
        self._ek: Any = None
        self._ak: Any = None
        self._ek_public = b""
        self._ak_public = b""

    def __repr__(self) -> str:
        return f"Tpm2Provider(tcti={self.tcti!r}, pcrs={self.pcr_spec!r})"

    def _open(self) -> Any:
        if self._ctx is not None:
            return self._ctx
        from tpm2_pytss import ESAPI
        from tpm2_pytss.constants import ESYS_TR, TPMA_OBJECT  # type: ignore[import-untyped]
        from tpm2_pytss.utils import NoSuchIndex, create_ek_template

        types = _types()

        def no_nv(index: int) -> bytes:
            raise NoSuchIndex(index)  # the TCG template; an EK certificate is not needed here

        ctx = ESAPI(self.tcti)
        try:
            _, ek_template = create_ek_template(self.ek_type, no_nv)
            ek, ek_pub, *_ = ctx.create_primary(types.TPM2B_SENSITIVE_CREATE(), ek_template, ESYS_TR.ENDORSEMENT)
            attrs = (
                TPMA_OBJECT.RESTRICTED
                | TPMA_OBJECT.SIGN_ENCRYPT
                | TPMA_OBJECT.FIXEDTPM
                | TPMA_OBJECT.FIXEDPARENT
                | TPMA_OBJECT.SENSITIVEDATAORIGIN
                | TPMA_OBJECT.USERWITHAUTH
            )
            template = types.TPM2B_PUBLIC(types.TPMT_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=attrs))
            try:
                ak, ak_pub, *_ = ctx.create_primary(types.TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT)
            except BaseException:
                ctx.flush_context(ek)
                raise
        except BaseException:
            ctx.close()
            raise
        self._ctx, self._ek, self._ak = ctx, ek, ak
        self._ek_public = bytes(ek_pub.publicArea.marshal())
        self._ak_public = bytes(ak_pub.publicArea.marshal())
        return ctx

    def _call(self, what: str, fn: Any) -> Any:
        with self._lock:
            try:
                return fn(self._open())
            except ProviderUnavailable:
                raise
            except Exception as exc:
                if _connection_error(exc):
                    self._reset()
                err = ProviderUnavailable(f"the TPM could not {what}")
                err.add_note(f"{self.tcti}: {type(exc).__name__}: {exc}")
                raise err from None

    def _reset(self) -> None:
        """Flush our keys (a TPM without a resource manager keeps them loaded) and close the connection."""
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        for handle in (self._ak, self._ek):
            with contextlib.suppress(Exception):  # the TPM may be gone already
                ctx.flush_context(handle)
        with contextlib.suppress(Exception):  # closing a broken connection: nothing to report
            ctx.close()

    def close(self) -> None:
        with self._lock:
            self._reset()

    def identity(self) -> Tpm2Identity:
        self._call("create its EK and AK", lambda ctx: None)
        return Tpm2Identity(self._ek_public, self._ak_public)

    def activate(self, challenge: CredentialChallenge) -> bytes:
        """TPM2_ActivateCredential with this TPM's AK and EK: the verifier's secret, if they are the ones named."""
        from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE

        types = _types()

        def run(ctx: Any) -> bytes:
            blob, _ = types.TPM2B_ID_OBJECT.unmarshal(challenge.credential_blob)
            secret, _ = types.TPM2B_ENCRYPTED_SECRET.unmarshal(challenge.encrypted_secret)
            session = ctx.start_auth_session(
                ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY, types.TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256
            )
            try:
                ctx.policy_secret(ESYS_TR.ENDORSEMENT, session)  # the EK's policy: endorsement authorization
                out = ctx.activate_credential(self._ak, self._ek, blob, secret, session2=session)
            finally:
                ctx.flush_context(session)
            return bytes(out)

        answer: bytes = self._call("activate the credential", run)
        return answer

    def _read_pcrs(self, ctx: Any) -> dict[str, dict[str, str]]:
        types = _types()
        values: dict[str, dict[str, str]] = {}
        for bank, group in _pcr_groups(self.selection):
            selection = types.TPML_PCR_SELECTION.parse(f"{bank}:{','.join(map(str, group))}")
            _, _, digests = ctx.pcr_read(selection)
            read = [bytes(d) for d in digests]
            if len(read) != len(group):
                raise ProviderUnavailable(f"the TPM has no {bank} bank for PCRs {group}")
            values.setdefault(bank, {}).update({str(i): v.hex() for i, v in zip(group, read, strict=True)})
        return values

    def evidence(self, report_data: bytes) -> Evidence:
        data = require_report_data(report_data)
        types = _types()

        def run(ctx: Any) -> Evidence:
            selection = types.TPML_PCR_SELECTION.parse(self.pcr_spec)
            for _ in range(3):  # a PCR extended between the quote and the read: quote again
                quoted, signature = ctx.quote(self._ak, selection, types.TPM2B_DATA(data))
                pcrs = self._read_pcrs(ctx)
                attest = bytes(quoted)
                parsed, _ = types.TPMS_ATTEST.unmarshal(attest)
                ordered = _selected(parsed.attested.quote.pcrSelect)
                concat = b"".join(bytes.fromhex(pcrs[bank][str(i)]) for bank, i in ordered)
                if hashlib.sha256(concat).digest() == bytes(parsed.attested.quote.pcrDigest):
                    claims = {
                        "signature": bytes(signature.marshal()).hex(),
                        "ak_public": self._ak_public.hex(),
                        "ek_public": self._ek_public.hex(),
                        "pcrs": pcrs,
                    }
                    return Evidence(self.kind, attest, claims)
            raise ProviderUnavailable("the PCRs kept changing while the TPM quoted them")

        evidence: Evidence = self._call("quote", run)
        return evidence
