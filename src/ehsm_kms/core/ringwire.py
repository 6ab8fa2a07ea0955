"""Moving a domain-key ring between hardened processes without it ever crossing a channel in the clear.

Every hop of the DK (dkeyserver root -> worker -> dkeycache -> core) works the same way: the receiver makes an
ephemeral X25519 key (:class:`EphemeralKey`) and sends its public half; the sender proves nothing with it but
seals the ring to it (:func:`seal_ring`); only the holder of the private half opens it (:meth:`EphemeralKey.open`).
Where the receiver must prove what it is (towards a dkeyserver), its attestation evidence binds the DER
SubjectPublicKeyInfo of this same key (:attr:`EphemeralKey.spki`) into its report data, so evidence copied from
another connection, or relayed from a genuine node, is useless: the ring comes back sealed to a key the copier
does not hold.

Sealed ring (:class:`SealedRing`)::

    sender_public   32 bytes   the sender's ephemeral X25519 public key
    nonce           12 bytes
    ciphertext      AES-256-GCM(k, nonce, ring.to_bytes(), aad)
    k   = HKDF-SHA256(ikm = X25519(sender, receiver), salt = receiver_public || sender_public,
                      info = "ehsm-kms/ringwire/v1/" || context)
    aad = "ehsm-kms/ringwire/v1/" || context || receiver_public || sender_public

``context`` names the hop ("dkeyserver", "dkeycache"), so a ring sealed for one hop is not accepted on another.
The sender's key is thrown away after one use; the receiver's after one :meth:`EphemeralKey.open`.
"""

from __future__ import annotations

import os
from typing import NoReturn

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ehsm_kms import errors
from ehsm_kms.core.dk import DomainKeyRing

PUBLIC_SIZE = 32
NONCE_SIZE = 12
_LABEL = b"ehsm-kms/ringwire/v1/"
CONTEXTS = ("dkeyserver", "dkeycache")


class SealedRing(msgspec.Struct, frozen=True):
    """A ring sealed to one receiver's ephemeral key (module docstring)."""

    sender_public: bytes
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"SealedRing(<{len(self.ciphertext)} bytes>)"


def _context(context: str) -> bytes:
    if context not in CONTEXTS:
        raise errors.CryptoError(f"unknown ring-transfer context {context!r}")
    return context.encode("ascii")


def _key(shared: bytes, receiver: bytes, sender: bytes, context: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=receiver + sender, info=_LABEL + context)
    return hkdf.derive(shared)


def _public(raw: bytes) -> X25519PublicKey:
    if not isinstance(raw, bytes) or len(raw) != PUBLIC_SIZE:
        raise errors.CryptoError("an X25519 public key is 32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def spki_of(public: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a raw X25519 public key (what report data binds)."""
    return _public(public).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class EphemeralKey:
    """The receiver's one-use X25519 key. The private half never leaves this object and is not picklable."""

    __slots__ = ("_private", "_used", "public")

    def __init__(self) -> None:
        self._private: X25519PrivateKey | None = X25519PrivateKey.generate()
        self._used = False
        self.public = _raw(self._private.public_key())

    @property
    def spki(self) -> bytes:
        return spki_of(self.public)

    def open(self, sealed: SealedRing, *, context: str) -> DomainKeyRing:
        """The ring sealed to this key; CryptoError (one message, whatever the cause) if it does not open."""
        ctx = _context(context)
        private = self._private
        if private is None or self._used:
            raise errors.CryptoError("this ephemeral key was already used")
        self._used = True
        self._private = None
        try:
            sender = _public(sealed.sender_public)
            if len(sealed.nonce) != NONCE_SIZE:
                raise errors.CryptoError()
            shared = private.exchange(sender)
            key = _key(shared, self.public, sealed.sender_public, ctx)
            aad = _LABEL + ctx + self.public + sealed.sender_public
            plain = AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, aad)
        except (InvalidTag, ValueError, errors.CryptoError):
            raise errors.CryptoError("the sealed domain-key ring does not open") from None
        try:
            return DomainKeyRing.from_bytes(plain)
        except errors.CoreStartError:
            raise errors.CryptoError("the sealed domain-key ring does not open") from None

    def __repr__(self) -> str:
        return f"EphemeralKey(public={self.public.hex()[:16]}...)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an EphemeralKey cannot be pickled")


def seal_ring(ring: DomainKeyRing, receiver_public: bytes, *, context: str) -> SealedRing:
    """``ring`` sealed so that only the holder of ``receiver_public``'s private half can open it."""
    ctx = _context(context)
    receiver = _public(receiver_public)
    sender = X25519PrivateKey.generate()
    sender_public = _raw(sender.public_key())
    try:
        shared = sender.exchange(receiver)
    except ValueError:  # a low-order point gives an all-zero secret, which cryptography refuses
        raise errors.CryptoError("the receiver's public key is not usable") from None
    key = _key(shared, receiver_public, sender_public, ctx)
    nonce = os.urandom(NONCE_SIZE)
    aad = _LABEL + ctx + receiver_public + sender_public
    return SealedRing(sender_public, nonce, AESGCM(key).encrypt(nonce, ring.to_bytes(), aad))


__all__ = ["CONTEXTS", "EphemeralKey", "SealedRing", "seal_ring", "spki_of"]
