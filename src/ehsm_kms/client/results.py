"""Typed results of the SDK's calls: frozen dataclasses, bytes for binary values, secrets masked in ``repr``.

Times are the server's milliseconds since the epoch, as on the wire; the ``*_at`` properties give aware
:class:`datetime.datetime` objects in UTC.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ehsm_kms.client.errors import ResponseError


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class Version:
    version: str
    git_sha: str
    server: str | None = None  # ours: "ehsm-kms <version>" (the original sends only version and git_sha)


@dataclass(frozen=True, slots=True)
class NodeAttestation:
    """What an attested enrollment verified about the node (docs/attestation.md): the evidence's kind, its status
    ("OK" for tpm2, the TCB status for DCAP) and the measurements the policy was checked against."""

    kind: str
    status: str
    measurements: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class NodeEvidence:
    """AttestNode: the node's evidence (the JSON form of docs/attestation.md) of kind ``kind``, not yet checked."""

    kind: str
    evidence: bytes


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A newly enrolled app. The APIKey is shown only once: store it (``ehsm-kms profile add`` keeps it 0600).

    ``attestation`` is set when the enrollment was attested (``enroll(attest=policy)``)."""

    appid: str
    apikey: str = field(repr=False)
    attestation: NodeAttestation | None = None


@dataclass(frozen=True, slots=True)
class DataKey:
    """A data key: ``plaintext`` to use now and forget, ``ciphertext`` to store beside the data it protects."""

    plaintext: bytes = field(repr=False)
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One row of ListKey."""

    keyid: str
    keyspec: str
    key_state: int
    creation_date: int | None
    expire_time: int | None
    alias: str = ""

    @property
    def enabled(self) -> bool:
        return self.key_state == 1

    @property
    def created_at(self) -> datetime | None:
        return _when(self.creation_date)

    @property
    def expires_at(self) -> datetime | None:
        return _when(self.expire_time)


@dataclass(frozen=True, slots=True)
class ImportParameters:
    """GetParametersForImport: the RSA public key to wrap key material with, and the single-use import token."""

    keyid: str
    pubkey: str
    import_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SecretValue:
    name: str
    data: str = field(repr=False)
    version_id: int
    create_time: int | None

    @property
    def created_at(self) -> datetime | None:
        return _when(self.create_time)


@dataclass(frozen=True, slots=True)
class SecretVersion:
    version_id: int
    create_time: int | None

    @property
    def created_at(self) -> datetime | None:
        return _when(self.create_time)


@dataclass(frozen=True, slots=True)
class SecretVersions:
    """ListSecretVersionIds (an unknown or deleted secret has none)."""

    name: str
    total_count: int
    versions: tuple[SecretVersion, ...]


@dataclass(frozen=True, slots=True)
class SecretSummary:
    """One row of ListSecrets (secrets pending deletion included, with their ``planned_delete_time``)."""

    name: str
    create_time: int | None
    description: str | None = None
    planned_delete_time: int | None = None

    @property
    def created_at(self) -> datetime | None:
        return _when(self.create_time)

    @property
    def pending_deletion(self) -> bool:
        return self.planned_delete_time is not None


@dataclass(frozen=True, slots=True)
class SecretDescription:
    """DescribeSecret."""

    name: str
    create_time: int | None
    description: str | None = None
    planned_delete_time: int | None = None
    rotation_interval: str | None = None
    last_rotation_date: int | None = None
    next_rotation_date: int | None = None

    @property
    def created_at(self) -> datetime | None:
        return _when(self.create_time)

    @property
    def pending_deletion(self) -> bool:
        return self.planned_delete_time is not None


# ---------------------------------------------------------------- remote attestation (contract section 7)
@dataclass(frozen=True, slots=True)
class Quote:
    """GenerateQuote: the node's evidence for ``challenge`` (the base64 echo). With an SGX node, ``quote`` is the
    DCAP quote; with a TPM node, the JSON form of the evidence (docs/attestation.md)."""

    challenge: str
    quote: bytes


@dataclass(frozen=True, slots=True)
class QuoteVerification:
    """VerifyQuote. ``result`` is the DCAP status as sgx_ql_qv_result_t (0: OK); a genuine quote verifies whatever
    its status, so check ``ok`` (or ``result``) before trusting it. ``sign`` is the server's HMAC of the result."""

    nonce: str
    result: int
    mr_enclave: str
    mr_signer: str
    sign: str

    @property
    def ok(self) -> bool:
        return self.result == 0


@dataclass(frozen=True, slots=True)
class QuotePolicy:
    """A stored quote policy (UploadQuotePolicy, GetQuotePolicy)."""

    policy_id: str
    mr_enclave: str
    mr_signer: str
    create_time: int | None = None

    @property
    def created_at(self) -> datetime | None:
        return _when(self.create_time)


# ---------------------------------------------------------------- key versions, aliases, deletion (docs/beyond.md)
@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One row of ListKeyVersions."""

    version: int
    creation_date: int | None
    primary: bool
    retired: bool

    @property
    def created_at(self) -> datetime | None:
        return _when(self.creation_date)


@dataclass(frozen=True, slots=True)
class KeyVersions:
    """ListKeyVersions: a key's versions, oldest first."""

    keyid: str
    primary_version: int
    min_decrypt_version: int
    versions: tuple[KeyVersion, ...]


@dataclass(frozen=True, slots=True)
class ReEncrypted:
    """ReEncrypt: the ciphertext under the destination key's primary version."""

    ciphertext: bytes
    keyid: str
    keyversion: int


@dataclass(frozen=True, slots=True)
class KeyDescription:
    """DescribeKey. ``rotation_period`` is in days (0: no automatic rotation)."""

    keyid: str
    keyspec: str
    keyusage: str
    origin: str
    key_state: int
    creation_date: int | None
    expire_time: int | None
    primary_version: int
    min_decrypt_version: int
    versions: tuple[int, ...]
    alias: str | None = None
    description: str | None = None
    rotation_period: int = 0
    next_rotation_date: int | None = None
    deletion_date: int | None = None

    @property
    def enabled(self) -> bool:
        return self.key_state == 1

    @property
    def created_at(self) -> datetime | None:
        return _when(self.creation_date)

    @property
    def pending_deletion(self) -> bool:
        return self.deletion_date is not None


@dataclass(frozen=True, slots=True)
class Alias:
    """An alias and the key it names (CreateAlias, UpdateAlias, ListAliases)."""

    alias: str
    keyid: str


@dataclass(frozen=True, slots=True)
class KeyDeletion:
    """ScheduleKeyDeletion: the key is pending deletion until ``deletion_date`` (ms)."""

    keyid: str
    deletion_date: int | None
    key_state: int

    @property
    def deletes_at(self) -> datetime | None:
        return _when(self.deletion_date)


@dataclass(frozen=True, slots=True)
class RotationSchedule:
    """UpdateKeyRotation: ``rotation_period`` in days (0: no automatic rotation) and the next rotation (ms)."""

    keyid: str
    rotation_period: int
    next_rotation_date: int | None

    @property
    def next_rotation_at(self) -> datetime | None:
        return _when(self.next_rotation_date)


# ---------------------------------------------------------------- administration (docs/beyond.md)
@dataclass(frozen=True, slots=True)
class AppInfo:
    """An app as the admin actions show it; ``keys`` (its number of keys) only from AdminShowApp."""

    appid: str
    state: str
    created_date: int | None
    keys: int | None = None

    @property
    def active(self) -> bool:
        return self.state == "active"

    @property
    def created_at(self) -> datetime | None:
        return _when(self.created_date)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """AdminRotateApiKey: the app's new APIKey (the old one no longer works). Shown once."""

    appid: str
    apikey: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class EnrollToken:
    """AdminIssueEnrollToken: a one-time enrollment token, valid until ``expire_time`` (ms)."""

    token: str = field(repr=False)
    expire_time: int | None = None

    @property
    def expires_at(self) -> datetime | None:
        return _when(self.expire_time)


# ---------------------------------------------------------------- reading result objects
def need(result: Mapping[str, Any], key: str, action: str) -> Any:
    if key not in result:
        raise ResponseError(f"{action}: the server's result has no {key!r}")
    return result[key]


def text(result: Mapping[str, Any], key: str, action: str) -> str:
    value = need(result, key, action)
    if not isinstance(value, str):
        raise ResponseError(f"{action}: {key!r} is not a string")
    return value


def unb64(result: Mapping[str, Any], key: str, action: str) -> bytes:
    value = text(result, key, action)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ResponseError(f"{action}: {key!r} is not base64") from None


def flag(result: Mapping[str, Any], key: str, action: str) -> bool:
    value = need(result, key, action)
    if not isinstance(value, bool):
        raise ResponseError(f"{action}: {key!r} is not a boolean")
    return value


def millis(value: Any) -> int | None:
    """A time in ms as the server sends it: a number, a numeric string, or nothing (``""``, null, absent)."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def integer(result: Mapping[str, Any], key: str, action: str) -> int:
    value = need(result, key, action)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ResponseError(f"{action}: {key!r} is not an integer")
    return value


def optional_text(result: Mapping[str, Any], key: str) -> str | None:
    value = result.get(key)
    return value if isinstance(value, str) and value != "" else None
