"""Signature checks for attestation evidence (TPM 2.0 quotes): pure functions over public numbers.

They live in the core because only the core imports ``cryptography.hazmat`` (DESIGN invariant 1); they hold no
secret and touch no key of the core. The verifiers in :mod:`ehsm_kms.provisioning.attest` parse the TPM
structures and hand over plain numbers and bytes.

Only what an attestation key can sensibly be is accepted: ECDSA on P-256/P-384/P-521 and RSA (2048 bits or more)
with PKCS#1 v1.5 or PSS, each with SHA-256, SHA-384 or SHA-512. PSS signatures must use the salt length the TPM
uses (the digest size); a verifier that also accepted any salt length would accept more than TPMs make.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "EcPublic",
    "RsaPublic",
    "SignatureInvalid",
    "certificate_spki",
    "public_from_pem",
    "spki_der",
    "verify_ecdsa",
    "verify_rsa",
]

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "p256": ec.SECP256R1,
    "p384": ec.SECP384R1,
    "p521": ec.SECP521R1,
}
_CURVE_NAMES = {cls().name: name for name, cls in _CURVES.items()}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
MIN_RSA_BITS = 2048


class SignatureInvalid(Exception):
    """The signature does not verify, or the key or algorithm is not one an attestation key may use."""


@dataclass(frozen=True, slots=True)
class RsaPublic:
    n: int
    e: int


@dataclass(frozen=True, slots=True)
class EcPublic:
    curve: str  # "p256", "p384" or "p521"
    x: int
    y: int


def _hash(name: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[name]()
    except KeyError:
        raise SignatureInvalid(f"unsupported digest {name!r}") from None


def _ec_key(pub: EcPublic) -> ec.EllipticCurvePublicKey:
    curve = _CURVES.get(pub.curve)
    if curve is None:
        raise SignatureInvalid(f"unsupported curve {pub.curve!r}")
    try:
        return ec.EllipticCurvePublicNumbers(pub.x, pub.y, curve()).public_key()
    except ValueError:
        raise SignatureInvalid("the point is not on the curve") from None


def _rsa_key(pub: RsaPublic) -> rsa.RSAPublicKey:
    if pub.n.bit_length() < MIN_RSA_BITS:
        raise SignatureInvalid(f"RSA keys under {MIN_RSA_BITS} bits are refused")
    try:
        return rsa.RSAPublicNumbers(pub.e, pub.n).public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureInvalid("not a valid RSA public key") from None


def verify_ecdsa(pub: EcPublic, hash_name: str, message: bytes, r: int, s: int) -> None:
    """Raise SignatureInvalid unless (r, s) is an ECDSA signature of ``message`` (hashed with ``hash_name``)."""
    key = _ec_key(pub)
    try:
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(_hash(hash_name)))
    except (InvalidSignature, ValueError):
        raise SignatureInvalid("the ECDSA signature does not verify") from None


def verify_rsa(pub: RsaPublic, scheme: str, hash_name: str, message: bytes, signature: bytes) -> None:
    """Raise SignatureInvalid unless ``signature`` is an RSA signature (``scheme`` "pkcs1" or "pss")."""
    key = _rsa_key(pub)
    algorithm = _hash(hash_name)
    if scheme == "pkcs1":
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
    elif scheme == "pss":
        pad = padding.PSS(mgf=padding.MGF1(_hash(hash_name)), salt_length=algorithm.digest_size)
    else:
        raise SignatureInvalid(f"unsupported RSA scheme {scheme!r}")
    try:
        key.verify(signature, message, pad, algorithm)
    except (InvalidSignature, ValueError):
        raise SignatureInvalid("the RSA signature does not verify") from None


def spki_der(pub: RsaPublic | EcPublic) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key (what ``openssl pkey -pubin -outform DER`` prints)."""
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = _rsa_key(pub) if isinstance(pub, RsaPublic) else _ec_key(pub)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_from_pem(pem: bytes) -> RsaPublic | EcPublic:
    """The numbers of a PEM public key (``-----BEGIN PUBLIC KEY-----``); ValueError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return RsaPublic(numbers.n, numbers.e)
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVE_NAMES:
        point = key.public_numbers()
        return EcPublic(_CURVE_NAMES[key.curve.name], point.x, point.y)
    raise ValueError("only RSA and NIST P-256/P-384/P-521 public keys are accepted")


def certificate_spki(certificate: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of an X.509 certificate (PEM or DER): the TLS key that attested enrollment
    binds into a node's evidence. ValueError for anything that is not a certificate."""
    try:
        if certificate.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(certificate)
        else:
            cert = x509.load_der_x509_certificate(certificate)
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not an X.509 certificate") from None
