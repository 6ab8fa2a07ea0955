"""SM2 CMKs (EH_SM2): Sign/Verify, AsymmetricEncrypt/Decrypt and GetPublicKey, through gmssl-pyx (GmSSL 3).

Key material (the bytes a keyblob wraps) is 96 bytes::

    d (32, big-endian private scalar, 1 <= d <= n-2) ‖ x (32) ‖ y (32)      public point P = dG, uncompressed

The public key a client sees is SubjectPublicKeyInfo PEM with algorithm id-ecPublicKey and the named curve
1.2.156.10197.1.301 (SM2), byte for byte what OpenSSL 3 writes for an SM2 key.

Signatures (GB/T 32918.2): SM3, signer ID ``1234567812345678``, DER ``SEQUENCE{INTEGER r, INTEGER s}``.
As in the original, ``EH_RAW`` and ``EH_DIGEST`` both sign SM3(Z ‖ input): a digest input is not taken as a
precomputed hash. Signing ignores the digest it is given (always SM3); verifying asks for ``EH_SM3``. The
padding is ignored.

Encryption (GB/T 32918.4): C1C3C2 in DER, ``SEQUENCE{INTEGER x, INTEGER y, OCTET STRING C3 (SM3, 32),
OCTET STRING C2}``, the format OpenSSL writes; plaintexts of 1..255 bytes. Every failed decryption raises one
:class:`ehsm_kms.errors.CryptoError`, whatever the cause.

:func:`load` checks the scalar's range and that the point is on the curve, not that P = dG: that would cost a
scalar multiplication on every use, and material only reaches it from a keyblob authenticated under the DK
that holds a pair :func:`generate_key` made and :func:`pairwise_check` accepted.
"""

from __future__ import annotations

import base64
import os
from typing import NoReturn

import gmssl_pyx

from ehsm_kms import errors
from ehsm_kms.core import kat
from ehsm_kms.core.secret import SecretBytes
from ehsm_kms.core.specs import LIMITS, DigestMode, MessageType, PaddingMode

SIGNER_ID = b"1234567812345678"
PRIVATE_LEN = 32
POINT_LEN = 64
MATERIAL_LEN = PRIVATE_LEN + POINT_LEN
ORDER = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123

# SEQUENCE{ SEQUENCE{ OID id-ecPublicKey, OID sm2 }, BIT STRING (0 unused bits) 0x04 ‖ x ‖ y }
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200") + b"\x04"
_GMSSL_ERRORS = (gmssl_pyx.GmsslInnerError, ValueError, TypeError)


def _point(public: bytes) -> bytes:
    """The 64-byte point ``x ‖ y`` of an on-curve public key (64 bytes, or 65 with the 0x04 prefix)."""
    if len(public) not in (POINT_LEN, POINT_LEN + 1):
        raise errors.CryptoError()
    try:
        point: bytes = gmssl_pyx.normalize_sm2_public_key(public)
    except _GMSSL_ERRORS:
        raise errors.CryptoError() from None
    return point


def _message_type(message_type: MessageType) -> None:
    if message_type not in (MessageType.EH_RAW, MessageType.EH_DIGEST):
        raise errors.CryptoError()


# ---------------------------------------------------------------- keys
class Sm2PublicKey:
    """The public half: verification, encryption and the PEM a client sees."""

    __slots__ = ("_point",)

    def __init__(self, point: bytes) -> None:
        self._point = _point(point)

    def public_point(self) -> bytes:
        """``x ‖ y``, 64 bytes."""
        return self._point

    def public_der(self) -> bytes:
        return _SPKI_PREFIX + self._point

    def public_pem(self) -> str:
        """SubjectPublicKeyInfo PEM (id-ecPublicKey, curve SM2), ending with a newline."""
        b64 = base64.b64encode(self.public_der()).decode()
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"

    def verify(
        self,
        message: bytes,
        message_type: MessageType,
        digest: DigestMode,
        padding: PaddingMode,
        signature: bytes,
    ) -> bool:
        """Whether ``signature`` is valid for SM3(Z ‖ message); a malformed signature is ``False``."""
        _message_type(message_type)
        if digest != DigestMode.EH_SM3:
            raise errors.CryptoError()
        try:
            return bool(gmssl_pyx.sm2_verify(self._point, message, signature, SIGNER_ID))
        except _GMSSL_ERRORS:
            return False

    def encrypt(self, plaintext: bytes) -> bytes:
        if not 1 <= len(plaintext) <= LIMITS.sm2_plaintext_max:
            raise errors.CryptoError()
        try:
            ciphertext: bytes = gmssl_pyx.sm2_encrypt(self._point, plaintext)
        except _GMSSL_ERRORS:  # pragma: no cover - inputs are checked above
            raise errors.CryptoError() from None
        return ciphertext

    def __repr__(self) -> str:
        return "Sm2PublicKey(EH_SM2)"


class Sm2Key(Sm2PublicKey):
    """An SM2 private key inside the core: masked ``repr``, no pickling, no way to read the private scalar."""

    __slots__ = ("_private",)

    def __init__(self, private: SecretBytes, point: bytes) -> None:
        if len(private) != PRIVATE_LEN or not 1 <= int.from_bytes(private.reveal(), "big") <= ORDER - 2:
            raise errors.CryptoError()
        super().__init__(point)
        self._private = private

    def sign(self, message: bytes, message_type: MessageType, digest: DigestMode, padding: PaddingMode) -> bytes:
        """A DER signature of SM3(Z ‖ message), whatever ``digest`` says (the original forces SM3)."""
        _message_type(message_type)
        if digest not in DigestMode.__members__.values():
            raise errors.CryptoError()
        try:
            signature: bytes = gmssl_pyx.sm2_sign(self._private.reveal(), self._point, message, SIGNER_ID)
        except _GMSSL_ERRORS:  # pragma: no cover - the key is checked when loaded
            raise errors.CryptoError() from None
        return signature

    def decrypt(self, ciphertext: bytes) -> bytes:
        """The plaintext; every failure, whatever its cause, is the same :class:`errors.CryptoError`."""
        try:
            plaintext: bytes = gmssl_pyx.sm2_decrypt(self._private.reveal(), ciphertext)
        except Exception:
            raise errors.CryptoError() from None
        if not plaintext:
            raise errors.CryptoError()
        return plaintext

    def __repr__(self) -> str:
        return "Sm2Key(EH_SM2, <private key hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("Sm2Key cannot be pickled")


# ---------------------------------------------------------------- the public recipe
def generate_key() -> bytes:
    """A fresh key pair as material: ``d (32) ‖ x (32) ‖ y (32)``."""
    public, private = gmssl_pyx.sm2_key_generate()
    material: bytes = bytes(private) + bytes(public)
    if len(material) != MATERIAL_LEN:  # pragma: no cover - the library's fixed sizes
        raise errors.CryptoError()
    return material


def load(material: bytes) -> Sm2Key:
    """The key in ``material`` (``d ‖ x ‖ y``); a wrong length, a scalar out of range or a point off the curve
    is a CryptoError."""
    if len(material) != MATERIAL_LEN:
        raise errors.CryptoError()
    return Sm2Key(SecretBytes(material[:PRIVATE_LEN]), material[PRIVATE_LEN:])


def load_public(point: bytes) -> Sm2PublicKey:
    """A public key from its point (``x ‖ y`` or ``04 ‖ x ‖ y``), to verify with a key the core lacks."""
    return Sm2PublicKey(point)


# ---------------------------------------------------------------- checks
def pairwise_check(key: Sm2Key) -> None:
    """Sign/verify and encrypt/decrypt with a new key before it is used; CoreStartError if either fails."""
    message = b"ehsm-kms SM2 pairwise check"
    args = (MessageType.EH_RAW, DigestMode.EH_SM3, PaddingMode.EH_PAD_NONE)
    secret = os.urandom(32)
    try:
        signature = key.sign(message, *args)
        # No deliberate failure here (the self-test has those): GmSSL prints a trace to stderr for each one.
        ok = key.verify(message, *args, signature) and key.decrypt(key.encrypt(secret)) == secret
    except errors.CryptoError:
        ok = False
    if not ok:
        raise errors.CoreStartError("pairwise check failed: sm2")


def self_test() -> None:
    """Known answers from OpenSSL's SM2 tests: digest signatures, a message signature, a decryption."""
    for case in kat.load("sm2_kat")["cases"]:
        try:
            ok = _check(case)
        except Exception:
            ok = False
        if not ok:
            raise errors.CoreStartError("self-test failed: sm2")


def _check(case: kat.Data) -> bool:
    kind = case["kind"]
    if kind == "decrypt":
        key = load(kat.unhex(case, "material"))
        ciphertext = kat.unhex(case, "ciphertext")
        if key.decrypt(ciphertext) != kat.unhex(case, "expected"):
            return False
        try:
            key.decrypt(_flip(ciphertext))
        except errors.CryptoError:
            return True
        return False
    signature = kat.unhex(case, "signature")
    if kind == "digest_verify":
        point, digest = kat.unhex(case, "public_key"), kat.unhex(case, "digest")
        return bool(gmssl_pyx.sm2_verify_sm3_digest(point, digest, signature)) and not bool(
            gmssl_pyx.sm2_verify_sm3_digest(point, digest, _flip(signature))
        )
    if kind == "message_verify":
        key = load(kat.unhex(case, "material"))
        message = kat.unhex(case, "message")
        args = (MessageType.EH_RAW, DigestMode.EH_SM3, PaddingMode.EH_PAD_NONE)
        return key.verify(message, *args, signature) and not key.verify(message, *args, _flip(signature))
    return False


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])
