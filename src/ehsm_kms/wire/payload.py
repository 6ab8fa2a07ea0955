"""Payload validation with the exact messages of eHSM-KMS (contract section 3.1).

Existing clients match on these messages, typos included ("not a vailed base64 string."), so the engine
reproduces the original's checker rule by rule: for each field of the action, in the table's order, the first
failing check answers ``PayloadError(message)``. Extra payload keys are ignored (they are still signed).

JavaScript semantics that matter here, and how they are kept:

* ``value.length`` counts UTF-16 code units, so an astral character counts twice (:func:`utf16_len`);
* the original's regexes have no ``m`` flag and ``\\d`` is ASCII: patterns are compiled with ``re.ASCII`` and
  applied with ``fullmatch`` (Python's ``$`` would accept a trailing newline, JavaScript's does not);
* INT accepts a JSON number that ``Number.isInteger`` accepts *and* whose ``String()`` form is plain digits,
  so ``1.0`` and ``1e3`` pass, ``1e21`` (``"1e+21"``), ``true`` and ``"16"`` do not;
* CONST compares exactly (``Array.prototype.includes``): only the wire names of :mod:`ehsm_kms.core.specs`.

Where we differ from the original, on purpose:

* ``CreateKey.keyusage`` is checked (required CONST after ``keyspec`` and ``origin``); the original left it to
  the enclave, which answered ``500 "Server exception."``. A valid name combination that a key spec does not
  allow still passes here and fails later in the core with ``500 "Server exception."``.
* ``Decrypt.ciphertext`` may be up to 8400 characters (the original: 8232 = ``(6144 + 30) * 4 / 3``). Our
  ciphertexts carry a 5-byte header and a longer tag than the original's (:mod:`ehsm_kms.core.ciphertext`);
  the largest ciphertext of a 6144-byte plaintext is SM4-CBC-HMAC-SM3's 16 * 385 + 53 = 6213 bytes = 8284
  base64 characters (AES-GCM: 6177 bytes = 8236). 8400 characters (6300 bytes) admits every format we write,
  with room for one more header field, and still refuses input far beyond anything Encrypt can have produced.
  The original's own limit even refused its SM4-CBC ciphertexts of 6144-byte plaintexts (8236 characters).
* A payload that is absent (or ``null``) is validated as ``{}``: the original skipped validation entirely then
  (section 12.2.2), which let requests without their required fields reach the handlers.

Spelling aliases that existing clients send are mapped to the canonical field names by :func:`normalize`
before validation; the signature always covers what the client sent, never the normalized copy.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ehsm_kms import errors
from ehsm_kms.core.ciphertext import KEY_VERSION_MAX
from ehsm_kms.core.specs import DigestMode, KeySpec, KeyUsage, MessageType, Origin, PaddingMode
from ehsm_kms.wire.sign import js_number

# The original's shared limits: MAX_LENGTH = 6 KiB, and its base64 length.
MAX_LENGTH = 6 * 1024
B64_MAX = MAX_LENGTH * 4 // 3  # 8192
DECRYPT_CIPHERTEXT_MAX = 8400  # ours; see the module docstring (the original: 8232)


def utf16_len(text: str) -> int:
    """JavaScript's ``string.length``: UTF-16 code units."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class RuleType(enum.Enum):
    STRING = "string"
    BASE64 = "base64"
    INT = "int"
    CONST = "const"


_B64 = re.compile(r"[a-zA-Z0-9+/]+={0,2}", re.ASCII)
_INT_TEXT = re.compile(r"-?[0-9]*", re.ASCII)
UUID_PATTERN = re.compile(r"[a-z\d]{8}-[a-z\d]{4}-[a-z\d]{4}-[a-z\d]{4}-[a-z\d]{12}", re.ASCII)
ROTATION_PATTERN = re.compile(r"\d{1,4}[d,h,m,s]{1}", re.ASCII)


def is_base64(value: str) -> bool:
    """The original's ``is_base64``: non-empty, a multiple of 4, standard alphabet, at most two ``=``."""
    return bool(value) and len(value) % 4 == 0 and _B64.fullmatch(value) is not None


def _is_missing(value: Any) -> bool:
    """``value == undefined || value === ''``."""
    return value is None or (isinstance(value, str) and value == "")


def _is_js_integer(value: Any) -> bool:
    """``Number.isInteger(value) && /^-?[0-9]*$/.test(value)``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not value.is_integer():  # also NaN and the infinities
        return False
    return _INT_TEXT.fullmatch(js_number(value)) is not None


@dataclass(frozen=True, slots=True)
class Rule:
    """One field of an action's payload, as the original's ``payload_checker.js`` describes it."""

    key: str
    kind: RuleType
    required: bool = False
    min_length: int | None = None  # STRING, BASE64: UTF-16 code units
    max_length: int | None = None
    pattern: re.Pattern[str] | None = None  # STRING only; must match the whole value
    min_num: int | None = None  # INT
    max_num: int | None = None
    values: frozenset[str] = frozenset()  # CONST: the accepted wire names

    def error(self, value: Any) -> str | None:
        """The message this rule answers for ``value`` (``None`` when the field is absent); None when it passes."""
        key = self.key
        if _is_missing(value):
            return f"Missing required parameters, The {key} cannot be empty." if self.required else None
        kind = self.kind
        if kind is RuleType.STRING or kind is RuleType.BASE64:
            if not isinstance(value, str):
                return f"Parameter invalid, The {key} must be of string type."
            length = utf16_len(value)
            if self.max_length is not None and length > self.max_length:
                return f"Parameter invalid, The {key} length error."
            if self.min_length is not None and length < self.min_length:
                return f"Parameter invalid, The {key} length error."
            if kind is RuleType.BASE64:
                if not is_base64(value):
                    return f"Parameter invalid, The {key} not a vailed base64 string."
            elif self.pattern is not None and self.pattern.fullmatch(value) is None:
                return f"Parameter invalid, The {key} format wrong."
            return None
        if kind is RuleType.INT:
            if not _is_js_integer(value):
                return f"Parameter invalid, The {key} must be of integer type."
            if self.max_num is not None and value > self.max_num:
                return f"Parameter invalid, The {key} value must be less than or equal to {self.max_num}."
            if self.min_num is not None and value < self.min_num:
                return f"Parameter invalid, The {key} value must be greater than or equal to {self.min_num}."
            return None
        # CONST
        if not isinstance(value, str) or value not in self.values:
            return f"Parameter invalid, The {key} type is incorrect."
        return None


def _string(
    key: str, lo: int | None, hi: int | None, *, required: bool = True, pattern: re.Pattern[str] | None = None
) -> Rule:
    return Rule(key, RuleType.STRING, required, min_length=lo, max_length=hi, pattern=pattern)


def _b64(key: str, lo: int | None, hi: int, *, required: bool = True) -> Rule:
    return Rule(key, RuleType.BASE64, required, min_length=lo, max_length=hi)


def _int(key: str, lo: int | None, hi: int | None, *, required: bool = True) -> Rule:
    return Rule(key, RuleType.INT, required, min_num=lo, max_num=hi)


def _const(key: str, names: Mapping[str, object], *, required: bool = True) -> Rule:
    return Rule(key, RuleType.CONST, required, values=frozenset(names))


ALIAS_REF_PATTERN = re.compile(r"alias/[A-Za-z0-9_.\-]{1,64}", re.ASCII)
ALIAS_PATTERN = re.compile(r"(alias/)?[A-Za-z0-9_.\-]{1,64}", re.ASCII)


@dataclass(frozen=True, slots=True)
class KeyRefRule(Rule):
    """A keyid, or (ours) ``alias/<name>``; anything else answers the original's messages for a keyid."""

    def error(self, value: Any) -> str | None:
        if isinstance(value, str) and ALIAS_REF_PATTERN.fullmatch(value) is not None:
            return None
        return Rule.error(self, value)


def _keyref(key: str, *, required: bool = True) -> Rule:
    return KeyRefRule(key, RuleType.STRING, required, min_length=36, max_length=36, pattern=UUID_PATTERN)


KEYID = _keyref("keyid")
AAD = _b64("aad", None, B64_MAX, required=False)
KEYSPEC = _const("keyspec", KeySpec.__members__)
ORIGIN = _const("origin", Origin.__members__)
KEYUSAGE = _const("keyusage", KeyUsage.__members__)
MESSAGE_TYPE = _const("message_type", MessageType.__members__)
DIGEST_MODE = _const("digest_mode", DigestMode.__members__)
PADDING_MODE = _const("padding_mode", PaddingMode.__members__)
KEYLEN = _int("keylen", 1, 1024)
SECRET_NAME = _string("secretName", 1, 64)
SECRET_DATA = _string("secretData", 1, 4096)
DESCRIPTION = _string("description", 0, 4096, required=False)
MESSAGE = _b64("message", 1, B64_MAX)

_SIGN = (KEYID, MESSAGE, MESSAGE_TYPE, DIGEST_MODE, PADDING_MODE)

_RULES: dict[str, tuple[Rule, ...]] = {
    # ------------------------------------------------------------------ cryptographic (section 3.1)
    "CreateKey": (KEYSPEC, ORIGIN, KEYUSAGE),
    "Encrypt": (KEYID, _b64("plaintext", 1, B64_MAX), AAD),
    "Decrypt": (KEYID, _b64("ciphertext", 1, DECRYPT_CIPHERTEXT_MAX), AAD),
    "GenerateDataKey": (KEYID, KEYLEN, AAD),
    "GenerateDataKeyWithoutPlaintext": (KEYID, KEYLEN, AAD),
    "Sign": _SIGN,
    "Verify": (*_SIGN, _b64("signature", 1, B64_MAX), _int("keyversion", 1, KEY_VERSION_MAX, required=False)),
    "AsymmetricEncrypt": (KEYID, _b64("plaintext", 1, B64_MAX), PADDING_MODE),
    "AsymmetricDecrypt": (KEYID, _b64("ciphertext", 1, B64_MAX), PADDING_MODE),
    "GetPublicKey": (KEYID,),
    "GetParametersForImport": (KEYID, KEYSPEC),
    "ImportKeyMaterial": (KEYID, PADDING_MODE, _b64("key_material", 1, B64_MAX)),
    "ExportDataKey": (KEYID, _string("ukeyid", 1, B64_MAX), AAD, _string("olddatakey_base", 1, B64_MAX)),
    # ------------------------------------------------------------------ key management
    "ListKey": (),
    "DeleteAllKey": (),
    "DeleteKey": (KEYID,),
    "EnableKey": (KEYID,),
    "DisableKey": (KEYID,),
    # ------------------------------------------------------------------ remote attestation
    "GenerateQuote": (_b64("challenge", 1, 4096),),
    "VerifyQuote": (
        _b64("quote", 1, 10924),
        _b64("nonce", 1, 4096),
        _string("policyId", 36, 36, required=False, pattern=UUID_PATTERN),
    ),
    "UploadQuotePolicy": (_string("mr_enclave", 64, 64), _string("mr_signer", 64, 64)),
    "GetQuotePolicy": (_string("policyId", 36, 36, pattern=UUID_PATTERN),),
    # ------------------------------------------------------------------ secret manager
    "CreateSecret": (
        SECRET_NAME,
        SECRET_DATA,
        _string("encryptionKeyId", 36, 36, required=False, pattern=UUID_PATTERN),
        DESCRIPTION,
        _string("rotationInterval", 0, 5, required=False, pattern=ROTATION_PATTERN),
    ),
    "UpdateSecretDesc": (SECRET_NAME, DESCRIPTION),
    "PutSecretValue": (SECRET_NAME, SECRET_DATA),
    "ListSecretVersionIds": (SECRET_NAME,),
    "ListSecrets": (_string("secretName", 1, 64, required=False),),
    "DescribeSecret": (SECRET_NAME,),
    "DeleteSecret": (
        SECRET_NAME,
        _int("recoveryPeriod", 1, 365, required=False),
        _string("forceDelete", 0, 5, required=False),
    ),
    "GetSecretValue": (SECRET_NAME, _int("versionId", 1, None, required=False)),
    "RestoreSecret": (SECRET_NAME,),
    # ------------------------------------------------------------------ ours (beyond the original)
    "GenerateRandom": (_int("length", 1, 1024),),
    "GenerateMac": (KEYID, MESSAGE, _const("digest_mode", DigestMode.__members__, required=False)),
    "VerifyMac": (
        KEYID,
        MESSAGE,
        _const("digest_mode", DigestMode.__members__, required=False),
        _b64("mac", 1, B64_MAX),
        _int("keyversion", 1, KEY_VERSION_MAX, required=False),
    ),
    "RotateKey": (KEYID,),
    "ListKeyVersions": (KEYID,),
    "DescribeKey": (KEYID,),
    "ScheduleKeyDeletion": (KEYID, _int("pendingWindowInDays", 7, 30, required=False)),
    "CancelKeyDeletion": (KEYID,),
    "ReEncrypt": (
        KEYID,
        _b64("ciphertext", 1, DECRYPT_CIPHERTEXT_MAX),
        AAD,
        _keyref("destination_keyid", required=False),
        _b64("destination_aad", None, B64_MAX, required=False),
    ),
    "CreateAlias": (KEYID, _string("alias", 1, 70, pattern=ALIAS_PATTERN)),
    "UpdateAlias": (KEYID, _string("alias", 1, 70, pattern=ALIAS_PATTERN)),
    "DeleteAlias": (_string("alias", 1, 70, pattern=ALIAS_PATTERN),),
    "ListAliases": (),
    "SetMinDecryptVersion": (KEYID, _int("minDecryptVersion", 1, KEY_VERSION_MAX)),
    "UpdateKeyRotation": (KEYID, _int("rotationPeriod", 0, 3650)),
    "UpdateKeyDescription": (KEYID, DESCRIPTION),
    "AdminListApps": (),
    "AdminShowApp": (_string("appid", 1, 64),),
    "AdminRotateApiKey": (_string("appid", 1, 64),),
    "AdminRevokeApp": (_string("appid", 1, 64),),
    "AdminRestoreApp": (_string("appid", 1, 64),),
    "AdminIssueEnrollToken": (_int("ttlHours", 1, 720, required=False),),
    # A GET action: its one query parameter is checked by these rules (the service wants 16..64 bytes).
    "AttestNode": (_b64("nonce", 1, 88),),
}

RULES: Mapping[str, tuple[Rule, ...]] = MappingProxyType(_RULES)
"""Per action, its payload rules in the order they are checked. Actions absent here have no payload rules."""

# action -> (canonical field, the spellings some existing clients send instead, in order of preference).
_ALIASES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    # The docs call it `olddatakey`; the official Python SDK sends `old_data_key`.
    "ExportDataKey": (("olddatakey_base", ("olddatakey", "old_data_key")),),
    # The docs spell it `ImportToken`.
    "ImportKeyMaterial": (("importToken", ("ImportToken",)),),
    # The official Python SDK sends `force_delete`.
    "DeleteSecret": (("forceDelete", ("force_delete",)),),
}
ALIASES: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]] = MappingProxyType(_ALIASES)


def normalize(action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``payload`` with alias spellings replaced by the canonical field names.

    The canonical field wins when it has a value (not missing, null or ""); otherwise the first alias with a
    value is used. Alias keys never appear in the result. ``payload`` itself is not changed.
    """
    out = dict(payload)
    for canonical, aliases in _ALIASES.get(action, ()):
        for alias in aliases:
            value = out.pop(alias, None)
            if _is_missing(out.get(canonical)) and not _is_missing(value):
                out[canonical] = value
    return out


def validate(action: str, payload: Mapping[str, Any] | Sequence[Any] | None) -> None:
    """Raise :class:`errors.PayloadError` with the message of the first failing rule of ``action``.

    ``None`` (no payload) is validated as ``{}``. An array payload (JavaScript lets one through as an object)
    has none of the named fields, so it fails on the first required one, as in the original.
    """
    rules = _RULES.get(action)
    if not rules:
        return
    fields: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    for rule in rules:
        message = rule.error(fields.get(rule.key))
        if message is not None:
            raise errors.PayloadError(message)


def checked(action: str, payload: Mapping[str, Any] | Sequence[Any] | None) -> dict[str, Any]:
    """:func:`normalize` then :func:`validate`: the payload a handler may read (a new dict)."""
    fields = normalize(action, payload if isinstance(payload, Mapping) else {})
    validate(action, fields)
    return fields
