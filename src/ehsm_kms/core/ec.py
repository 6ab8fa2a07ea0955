"""EC CMKs (EH_EC_P224/P256/P256K/P384/P521): ECDSA Sign/Verify and GetPublicKey.

Curves: EH_EC_P224 = secp224r1, EH_EC_P256 = secp256r1 (prime256v1), EH_EC_P256K = secp256k1,
EH_EC_P384 = secp384r1, EH_EC_P521 = secp521r1. Key material is the PKCS#8 DER private key; the public key a
client sees is SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``).

Signatures are DER ``SEQUENCE{INTEGER r, INTEGER s}`` with a fresh random nonce each time. The padding
argument is ignored (the contract only asks that it be a valid name). ``EH_RAW`` messages are hashed here;
``EH_DIGEST`` messages are a digest already and must be exactly its size. Digests: SHA-224/256/384/512 and SM3
(the original accepts SM3 for EC keys too). A malformed or wrong signature verifies ``False``.
"""

from __future__ import annotations

from typing import NoReturn

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ehsm_kms import errors
from ehsm_kms.core import kat
from ehsm_kms.core.specs import DIGEST_SIZES, DigestMode, KeySpec, MessageType, PaddingMode

CURVES: dict[KeySpec, type[ec.EllipticCurve]] = {
    KeySpec.EH_EC_P224: ec.SECP224R1,
    KeySpec.EH_EC_P256: ec.SECP256R1,
    KeySpec.EH_EC_P256K: ec.SECP256K1,
    KeySpec.EH_EC_P384: ec.SECP384R1,
    KeySpec.EH_EC_P521: ec.SECP521R1,
}

_HASHES: dict[DigestMode, type[hashes.HashAlgorithm]] = {
    DigestMode.EH_SHA_224: hashes.SHA224,
    DigestMode.EH_SHA_256: hashes.SHA256,
    DigestMode.EH_SHA_384: hashes.SHA384,
    DigestMode.EH_SHA_512: hashes.SHA512,
    DigestMode.EH_SM3: hashes.SM3,
}


def _curve(spec: KeySpec) -> ec.EllipticCurve:
    curve = CURVES.get(spec)
    if curve is None:
        raise errors.CryptoError()
    return curve()


def _ecdsa(message: bytes, message_type: MessageType, digest: DigestMode) -> ec.ECDSA:
    """ECDSA over the hash of a raw message, or over a digest the caller already computed."""
    algorithm = _HASHES.get(digest)
    if algorithm is None:
        raise errors.CryptoError()
    if message_type == MessageType.EH_RAW:
        return ec.ECDSA(algorithm())
    if message_type == MessageType.EH_DIGEST:
        if len(message) != DIGEST_SIZES[digest]:
            raise errors.CryptoError()
        return ec.ECDSA(Prehashed(algorithm()))
    raise errors.CryptoError()


def _check_curve(spec: KeySpec, key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> None:
    if key.curve.name != _curve(spec).name:
        raise errors.CryptoError()


# ---------------------------------------------------------------- keys
class EcPublicKey:
    """The public half: verification and the PEM a client sees."""

    __slots__ = ("_public", "spec")

    def __init__(self, spec: KeySpec, public: ec.EllipticCurvePublicKey) -> None:
        _check_curve(spec, public)
        self.spec = spec
        self._public = public

    def public_pem(self) -> str:
        """SubjectPublicKeyInfo PEM (named curve, uncompressed point), ending with a newline."""
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def verify(
        self,
        message: bytes,
        message_type: MessageType,
        digest: DigestMode,
        padding: PaddingMode,
        signature: bytes,
    ) -> bool:
        algorithm = _ecdsa(message, message_type, digest)
        try:
            self._public.verify(signature, message, algorithm)
        except (InvalidSignature, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"EcPublicKey({self.spec.name})"


class EcKey(EcPublicKey):
    """An EC private key inside the core: masked ``repr``, no pickling, no way to read the private bytes."""

    __slots__ = ("_private",)

    def __init__(self, spec: KeySpec, private: ec.EllipticCurvePrivateKey) -> None:
        super().__init__(spec, private.public_key())
        self._private = private

    def sign(self, message: bytes, message_type: MessageType, digest: DigestMode, padding: PaddingMode) -> bytes:
        """A DER ECDSA signature; ``padding`` is ignored."""
        algorithm = _ecdsa(message, message_type, digest)
        try:
            return self._private.sign(message, algorithm)
        except (ValueError, UnsupportedAlgorithm):  # pragma: no cover - every combination we accept signs
            raise errors.CryptoError() from None

    def __repr__(self) -> str:
        return f"EcKey({self.spec.name}, <private key hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("EcKey cannot be pickled")


# ---------------------------------------------------------------- the public recipe
def generate_key(spec: KeySpec) -> bytes:
    """A fresh key on the spec's curve, as PKCS#8 DER."""
    key = ec.generate_private_key(_curve(spec))
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load(spec: KeySpec, material: bytes) -> EcKey:
    """The key in PKCS#8 DER ``material``; anything else, or a key on another curve, is a CryptoError."""
    _curve(spec)
    try:
        key = serialization.load_der_private_key(material, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise errors.CryptoError() from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise errors.CryptoError()
    return EcKey(spec, key)


def load_public(spec: KeySpec, der: bytes) -> EcPublicKey:
    """A public key from SubjectPublicKeyInfo DER (for verifying with a key the core does not hold)."""
    _curve(spec)
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise errors.CryptoError() from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise errors.CryptoError()
    return EcPublicKey(spec, key)


# ---------------------------------------------------------------- checks
def pairwise_check(key: EcKey) -> None:
    """Sign and verify with a new key before it is used; CoreStartError if the pair does not match."""
    message = b"ehsm-kms ECDSA pairwise check"
    args = (MessageType.EH_RAW, DigestMode.EH_SHA_256, PaddingMode.EH_PAD_NONE)
    try:
        signature = key.sign(message, *args)
        ok = key.verify(message, *args, signature) and not key.verify(message + b"!", *args, signature)
    except errors.CryptoError:
        ok = False
    if not ok:
        raise errors.CoreStartError("pairwise check failed: ec")


def self_test() -> None:
    """Known answers: a fixed ECDSA signature per curve verifies, and the same signature changed does not."""
    for case in kat.load("ec_kat")["cases"]:
        try:
            ok = _check(case)
        except Exception:
            ok = False
        if not ok:
            raise errors.CoreStartError("self-test failed: ec")


def _check(case: kat.Data) -> bool:
    if case["kind"] != "ecdsa_verify":
        return False
    key = load_public(KeySpec[case["keyspec"]], kat.unhex(case, "public_key_der"))
    args = (MessageType.EH_RAW, DigestMode[case["digest"]], PaddingMode.EH_PAD_NONE)
    message, signature = kat.unhex(case, "message"), kat.unhex(case, "signature")
    changed = signature[:-1] + bytes([signature[-1] ^ 1])
    return key.verify(message, *args, signature) and not key.verify(message, *args, changed)
