"""The key model as one table: wire names and numbers, valid combinations, limits.

Names and numbers are those of the eHSM-KMS wire contract (section 4.1). The rest of the project asks this module
which operations a key may do (section 4.2) and how large inputs may be (section 4.6) instead of keeping its own lists.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar


class KeySpec(enum.IntEnum):
    EH_AES_GCM_128 = 1
    EH_AES_GCM_192 = 2
    EH_AES_GCM_256 = 3
    EH_RSA_2048 = 10
    EH_RSA_3072 = 11
    EH_RSA_4096 = 12
    EH_EC_P224 = 20
    EH_EC_P256 = 21
    EH_EC_P256K = 22
    EH_EC_P384 = 23
    EH_EC_P521 = 24
    EH_SM2 = 30
    EH_SM4_CTR = 31
    EH_SM4_CBC = 32
    EH_HMAC = 40


class Origin(enum.IntEnum):
    EH_INTERNAL_KEY = 1
    EH_EXTERNAL_KEY = 2


class KeyUsage(enum.IntEnum):
    EH_KEYUSAGE_ENCRYPT_DECRYPT = 1
    EH_KEYUSAGE_SIGN_VERIFY = 2


class PaddingMode(enum.IntEnum):
    EH_PAD_NONE = 0
    EH_RSA_PKCS1 = 1
    EH_RSA_PKCS1_PSS = 2
    EH_RSA_PKCS1_OAEP = 3


class DigestMode(enum.IntEnum):
    EH_SHA_224 = 1
    EH_SHA_256 = 2
    EH_SHA_384 = 3
    EH_SHA_512 = 4
    EH_SM3 = 5


class MessageType(enum.IntEnum):
    EH_RAW = 1
    EH_DIGEST = 2


class Family(enum.Enum):
    AES = "aes"
    SM4 = "sm4"
    RSA = "rsa"
    EC = "ec"
    SM2 = "sm2"
    HMAC = "hmac"


class Op(enum.Enum):
    """Operations a key can be asked to do."""

    ENCRYPT = "encrypt"  # Encrypt / Decrypt / data keys / secret encryption
    ASYM_ENCRYPT = "asym_encrypt"  # AsymmetricEncrypt / AsymmetricDecrypt / ExportDataKey target
    SIGN = "sign"  # Sign / Verify
    MAC = "mac"  # GenerateMac / VerifyMac
    PUBLIC_KEY = "public_key"


@dataclass(frozen=True, slots=True)
class SpecInfo:
    spec: KeySpec
    family: Family
    key_bytes: int  # symmetric key length, or RSA modulus bytes (k), or EC field bytes
    usages: frozenset[KeyUsage]  # usages a key of this spec may be created with
    importable: bool  # BYOK: material may be imported (origin EXTERNAL)
    max_signature: int = 0  # largest signature in bytes (0: does not sign)


_ED = KeyUsage.EH_KEYUSAGE_ENCRYPT_DECRYPT
_SV = KeyUsage.EH_KEYUSAGE_SIGN_VERIFY

SPECS: dict[KeySpec, SpecInfo] = {
    KeySpec.EH_AES_GCM_128: SpecInfo(KeySpec.EH_AES_GCM_128, Family.AES, 16, frozenset({_ED}), True),
    KeySpec.EH_AES_GCM_192: SpecInfo(KeySpec.EH_AES_GCM_192, Family.AES, 24, frozenset({_ED}), True),
    KeySpec.EH_AES_GCM_256: SpecInfo(KeySpec.EH_AES_GCM_256, Family.AES, 32, frozenset({_ED}), True),
    KeySpec.EH_SM4_CTR: SpecInfo(KeySpec.EH_SM4_CTR, Family.SM4, 16, frozenset({_ED}), True),
    KeySpec.EH_SM4_CBC: SpecInfo(KeySpec.EH_SM4_CBC, Family.SM4, 16, frozenset({_ED}), True),
    KeySpec.EH_RSA_2048: SpecInfo(KeySpec.EH_RSA_2048, Family.RSA, 256, frozenset({_ED, _SV}), False, 256),
    KeySpec.EH_RSA_3072: SpecInfo(KeySpec.EH_RSA_3072, Family.RSA, 384, frozenset({_ED, _SV}), False, 384),
    KeySpec.EH_RSA_4096: SpecInfo(KeySpec.EH_RSA_4096, Family.RSA, 512, frozenset({_ED, _SV}), False, 512),
    KeySpec.EH_EC_P224: SpecInfo(KeySpec.EH_EC_P224, Family.EC, 28, frozenset({_ED, _SV}), False, 66),
    KeySpec.EH_EC_P256: SpecInfo(KeySpec.EH_EC_P256, Family.EC, 32, frozenset({_ED, _SV}), False, 72),
    KeySpec.EH_EC_P256K: SpecInfo(KeySpec.EH_EC_P256K, Family.EC, 32, frozenset({_ED, _SV}), False, 72),
    KeySpec.EH_EC_P384: SpecInfo(KeySpec.EH_EC_P384, Family.EC, 48, frozenset({_ED, _SV}), False, 104),
    KeySpec.EH_EC_P521: SpecInfo(KeySpec.EH_EC_P521, Family.EC, 66, frozenset({_ED, _SV}), False, 141),
    KeySpec.EH_SM2: SpecInfo(KeySpec.EH_SM2, Family.SM2, 32, frozenset({_ED, _SV}), False, 72),
    # HMAC keys: our addition (the original refuses EH_HMAC). Usage is SIGN_VERIFY (MAC generate / verify).
    KeySpec.EH_HMAC: SpecInfo(KeySpec.EH_HMAC, Family.HMAC, 32, frozenset({_SV}), True),
}

SYMMETRIC_FAMILIES = frozenset({Family.AES, Family.SM4})
ASYMMETRIC_FAMILIES = frozenset({Family.RSA, Family.EC, Family.SM2})
RSA_WRAPPING_SPECS = frozenset({KeySpec.EH_RSA_2048, KeySpec.EH_RSA_3072, KeySpec.EH_RSA_4096})


def info(spec: KeySpec) -> SpecInfo:
    return SPECS[spec]


def can_create(spec: KeySpec, usage: KeyUsage, origin: Origin) -> bool:
    """Whether CreateKey accepts this combination (contract 4.2, plus HMAC keys)."""
    si = SPECS[spec]
    if usage not in si.usages:
        return False
    # External keys are created empty and filled by ImportKeyMaterial; only importable specs make sense.
    return origin is Origin.EH_INTERNAL_KEY or si.importable


def allows(spec: KeySpec, usage: KeyUsage, origin: Origin, op: Op) -> bool:
    """Whether a key of this spec, usage and origin may do ``op`` (contract 4.2's per-operation gates)."""
    fam = SPECS[spec].family
    internal = origin is Origin.EH_INTERNAL_KEY
    if op is Op.ENCRYPT:
        return fam in SYMMETRIC_FAMILIES and usage is _ED
    if op is Op.ASYM_ENCRYPT:
        return fam in (Family.RSA, Family.SM2) and usage is _ED and internal
    if op is Op.SIGN:
        return fam in ASYMMETRIC_FAMILIES and usage is _SV and internal
    if op is Op.MAC:
        return fam is Family.HMAC and usage is _SV
    if op is Op.PUBLIC_KEY:
        return fam in ASYMMETRIC_FAMILIES and internal
    return False  # pragma: no cover - exhaustive over Op


# Digest sizes in bytes, for EH_DIGEST inputs.
DIGEST_SIZES: dict[DigestMode, int] = {
    DigestMode.EH_SHA_224: 28,
    DigestMode.EH_SHA_256: 32,
    DigestMode.EH_SHA_384: 48,
    DigestMode.EH_SHA_512: 64,
    DigestMode.EH_SM3: 32,
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of section 4.6 (decoded bytes unless said otherwise)."""

    encrypt_plaintext_max: int = 6144
    aad_max: int = 8192
    datakey_min: int = 1
    datakey_max: int = 1024
    sign_message_max: int = 6144
    signature_max: int = 512
    sm2_plaintext_max: int = 255
    random_max: int = 1024
    nonce_max_chars: int = 64
    timestamp_chars: int = 13
    timestamp_window_ms: int = 600_000
    replay_window_ms: int = 1_200_000
    import_token_validity_ms: int = 86_400_000
    cmk_lifetime_ms: int = 365 * 86_400_000


LIMITS = Limits()


def rsa_plaintext_max(spec: KeySpec, padding: PaddingMode) -> int:
    """Largest RSA plaintext: k-11 for PKCS#1 v1.5, k-66 for OAEP-SHA-256 (the real limit; the original used k-42)."""
    k = SPECS[spec].key_bytes
    if padding is PaddingMode.EH_RSA_PKCS1:
        return k - 11
    if padding is PaddingMode.EH_RSA_PKCS1_OAEP:
        return k - 2 * 32 - 2
    return 0


_E = TypeVar("_E", bound=enum.IntEnum)


def by_name(enum_cls: type[_E], name: str) -> _E | None:
    """Look up a wire name exactly (case-sensitive), or None."""
    return enum_cls.__members__.get(name)
