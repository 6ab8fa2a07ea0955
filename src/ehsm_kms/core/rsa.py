"""RSA CMKs (EH_RSA_2048/3072/4096): AsymmetricEncrypt/Decrypt, Sign/Verify, GetPublicKey, BYOK unwrapping.

Key material is the PKCS#8 DER private key (public exponent 65537), the bytes a keyblob wraps. The public key
a client sees is PKCS#1 PEM (``-----BEGIN RSA PUBLIC KEY-----``), as the original returned it.

Algorithms (contract 3.4 and 4.3):

* encryption: RSAES-PKCS1-v1_5, or OAEP with SHA-256, MGF1-SHA-256 and an empty label;
* signatures: RSASSA-PKCS1-v1_5, or PSS with MGF1 of the signing digest and a salt as long as that digest;
  ``EH_RAW`` messages are hashed here, ``EH_DIGEST`` messages are a digest already and must be exactly its
  size; SHA-224/256/384/512 and SM3.

Every failed decryption raises one :class:`ehsm_kms.errors.CryptoError` with its default message and no cause,
so a padding error cannot be told from any other failure (no Bleichenbacher or Manger oracle). PKCS#1 v1.5
decryption goes further: OpenSSL's implicit rejection answers a malformed ciphertext with a pseudo-random
plaintext derived from the key and the ciphertext instead of an error, so there is nothing to tell apart.

Loading does not run OpenSSL's full RSA key check (primality tests of p and q): it costs 70-500 ms per load on
a small machine, more than a hundred signatures, and material only reaches :func:`load` from a keyblob
authenticated under the DK that holds a key :func:`generate_key` made. ``validate=True`` runs the check for
material of any other origin. OpenSSL verifies every CRT result with the public exponent before it releases a
signature, so a damaged key cannot leak its factors through a faulty signature either way.
"""

from __future__ import annotations

import os
from typing import NoReturn

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as pad
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ehsm_kms import errors
from ehsm_kms.core import kat
from ehsm_kms.core.specs import (
    DIGEST_SIZES,
    DigestMode,
    Family,
    KeySpec,
    MessageType,
    PaddingMode,
    info,
    rsa_plaintext_max,
)

PUBLIC_EXPONENT = 65537

_HASHES: dict[DigestMode, type[hashes.HashAlgorithm]] = {
    DigestMode.EH_SHA_224: hashes.SHA224,
    DigestMode.EH_SHA_256: hashes.SHA256,
    DigestMode.EH_SHA_384: hashes.SHA384,
    DigestMode.EH_SHA_512: hashes.SHA512,
    DigestMode.EH_SM3: hashes.SM3,
}


def _bits(spec: KeySpec) -> int:
    si = info(spec)
    if si.family is not Family.RSA:
        raise errors.CryptoError()
    return si.key_bytes * 8


def _hash(digest: DigestMode) -> hashes.HashAlgorithm:
    algorithm = _HASHES.get(digest)
    if algorithm is None:
        raise errors.CryptoError()
    return algorithm()


def _prepare(
    message: bytes, message_type: MessageType, digest: DigestMode
) -> tuple[hashes.HashAlgorithm, hashes.HashAlgorithm | Prehashed]:
    """The digest, and what to hand cryptography: the hash for a raw message, ``Prehashed`` for a digest."""
    algorithm = _hash(digest)
    if message_type == MessageType.EH_RAW:
        return algorithm, algorithm
    if message_type == MessageType.EH_DIGEST:
        if len(message) != DIGEST_SIZES[digest]:
            raise errors.CryptoError()
        return algorithm, Prehashed(algorithm)
    raise errors.CryptoError()


def _signature_padding(padding: PaddingMode, algorithm: hashes.HashAlgorithm) -> pad.AsymmetricPadding:
    if padding == PaddingMode.EH_RSA_PKCS1:
        return pad.PKCS1v15()
    if padding == PaddingMode.EH_RSA_PKCS1_PSS:
        return pad.PSS(mgf=pad.MGF1(algorithm), salt_length=algorithm.digest_size)
    raise errors.CryptoError()


def _encryption_padding(padding: PaddingMode) -> pad.AsymmetricPadding:
    if padding == PaddingMode.EH_RSA_PKCS1:
        return pad.PKCS1v15()
    if padding == PaddingMode.EH_RSA_PKCS1_OAEP:
        return pad.OAEP(mgf=pad.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    raise errors.CryptoError()


# ---------------------------------------------------------------- keys
class RsaPublicKey:
    """The public half: encryption, verification and the PEM a client sees."""

    __slots__ = ("_public", "spec")

    def __init__(self, spec: KeySpec, public: rsa.RSAPublicKey) -> None:
        if public.key_size != _bits(spec):
            raise errors.CryptoError()
        self.spec = spec
        self._public = public

    @property
    def size(self) -> int:
        """k: the modulus length in bytes, which is also the length of every ciphertext and signature."""
        return info(self.spec).key_bytes

    def public_pem(self) -> str:
        """PKCS#1 ``RSA PUBLIC KEY`` PEM, ending with a newline."""
        return self._public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()

    def encrypt(self, plaintext: bytes, padding: PaddingMode) -> bytes:
        scheme = _encryption_padding(padding)
        if len(plaintext) > rsa_plaintext_max(self.spec, padding):
            raise errors.CryptoError()
        try:
            return self._public.encrypt(plaintext, scheme)
        except ValueError:  # pragma: no cover - the size check above is the only cause
            raise errors.CryptoError() from None

    def verify(
        self,
        message: bytes,
        message_type: MessageType,
        digest: DigestMode,
        padding: PaddingMode,
        signature: bytes,
    ) -> bool:
        """Whether ``signature`` is valid; one that is not exactly k bytes is an error, as in the original."""
        algorithm, prepared = _prepare(message, message_type, digest)
        scheme = _signature_padding(padding, algorithm)
        if len(signature) != self.size:
            raise errors.CryptoError()
        try:
            self._public.verify(signature, message, scheme, prepared)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"RsaPublicKey({self.spec.name})"


class RsaKey(RsaPublicKey):
    """An RSA private key inside the core: masked ``repr``, no pickling, no way to read the private bytes."""

    __slots__ = ("_private",)

    def __init__(self, spec: KeySpec, private: rsa.RSAPrivateKey) -> None:
        super().__init__(spec, private.public_key())
        self._private = private

    def decrypt(self, ciphertext: bytes, padding: PaddingMode) -> bytes:
        """The plaintext; every failure, whatever its cause, is the same :class:`errors.CryptoError`."""
        try:
            scheme = _encryption_padding(padding)
            if len(ciphertext) != self.size:
                raise ValueError
            return self._private.decrypt(ciphertext, scheme)
        except Exception:
            raise errors.CryptoError() from None

    def sign(self, message: bytes, message_type: MessageType, digest: DigestMode, padding: PaddingMode) -> bytes:
        algorithm, prepared = _prepare(message, message_type, digest)
        scheme = _signature_padding(padding, algorithm)
        try:
            return self._private.sign(message, scheme, prepared)
        except (ValueError, UnsupportedAlgorithm):  # pragma: no cover - every combination we accept signs
            raise errors.CryptoError() from None

    def __repr__(self) -> str:
        return f"RsaKey({self.spec.name}, <private key hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("RsaKey cannot be pickled")


# ---------------------------------------------------------------- the public recipe
def generate_key(spec: KeySpec) -> bytes:
    """A fresh key pair of the spec's modulus size, e = 65537, as PKCS#8 DER."""
    key = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=_bits(spec))
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load(spec: KeySpec, material: bytes, *, validate: bool = False) -> RsaKey:
    """The key in PKCS#8 DER ``material``; anything else, or a modulus of another size, is a CryptoError."""
    bits = _bits(spec)
    try:
        key = serialization.load_der_private_key(material, password=None, unsafe_skip_rsa_key_validation=not validate)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise errors.CryptoError() from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != bits:
        raise errors.CryptoError()
    return RsaKey(spec, key)


def load_public(spec: KeySpec, der: bytes) -> RsaPublicKey:
    """A public key from SubjectPublicKeyInfo or PKCS#1 DER, to verify with a key the core does not hold."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise errors.CryptoError() from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise errors.CryptoError()
    return RsaPublicKey(spec, key)


# ---------------------------------------------------------------- checks
def pairwise_check(key: RsaKey) -> None:
    """Sign/verify and encrypt/decrypt with a new key before it is used; CoreStartError if either fails."""
    message = b"ehsm-kms RSA pairwise check"
    secret = os.urandom(32)
    try:
        for padding in (PaddingMode.EH_RSA_PKCS1, PaddingMode.EH_RSA_PKCS1_PSS):
            signature = key.sign(message, MessageType.EH_RAW, DigestMode.EH_SHA_256, padding)
            if not key.verify(message, MessageType.EH_RAW, DigestMode.EH_SHA_256, padding, signature):
                raise errors.CryptoError()
        for padding in (PaddingMode.EH_RSA_PKCS1, PaddingMode.EH_RSA_PKCS1_OAEP):
            if key.decrypt(key.encrypt(secret, padding), padding) != secret:
                raise errors.CryptoError()
    except errors.CryptoError:
        raise errors.CoreStartError("pairwise check failed: rsa") from None


def self_test() -> None:
    """Known answers: deterministic PKCS#1 v1.5 signing, OAEP decryption, PKCS#1 v1.5 and PSS verification."""
    for case in kat.load("rsa_kat")["cases"]:
        try:
            ok = _check(case)
        except Exception:
            ok = False
        if not ok:
            raise errors.CoreStartError("self-test failed: rsa")


def _check(case: kat.Data) -> bool:
    spec = KeySpec[case["keyspec"]]
    kind = case["kind"]
    if kind == "oaep_decrypt":
        key = load(spec, kat.unhex(case, "private_key_pkcs8"))
        ciphertext = kat.unhex(case, "ciphertext")
        if key.decrypt(ciphertext, PaddingMode.EH_RSA_PKCS1_OAEP) != kat.unhex(case, "expected"):
            return False
        try:
            key.decrypt(_flip(ciphertext), PaddingMode.EH_RSA_PKCS1_OAEP)
        except errors.CryptoError:
            return True
        return False
    digest = DigestMode[case["digest"]]
    message = kat.unhex(case, "message")
    if kind == "pkcs1_sign":
        key = load(spec, kat.unhex(case, "private_key_pkcs8"))
        signature = key.sign(message, MessageType.EH_RAW, digest, PaddingMode.EH_RSA_PKCS1)
        if signature != kat.unhex(case, "expected"):
            return False
        public: RsaPublicKey = key
        padding = PaddingMode.EH_RSA_PKCS1
    elif kind in ("pkcs1_verify", "pss_verify"):
        public = load_public(spec, kat.unhex(case, "public_key_der"))
        signature = kat.unhex(case, "signature")
        padding = PaddingMode.EH_RSA_PKCS1 if kind == "pkcs1_verify" else PaddingMode.EH_RSA_PKCS1_PSS
    else:
        return False
    # A known answer that only ever accepts proves little: a changed signature must be refused.
    return public.verify(message, MessageType.EH_RAW, digest, padding, signature) and not public.verify(
        message, MessageType.EH_RAW, digest, padding, _flip(signature)
    )


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])
