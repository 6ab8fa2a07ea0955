"""Client-side primitives: the chunk sealing of envelope-encrypted streams, and wrapping BYOK key material.

These run in the *client's* process, with the client's own data key (the plaintext half of a GenerateDataKey
answer); nothing here touches a CMK or the domain key. They live under ``core/`` because that is the one place the
project imports ``cryptography.hazmat`` (DESIGN invariant 1), and :mod:`ehsm_kms.client.envelope` builds the
stream format on top of them.

Chunk sealing (format version 1, suite 1), for a 32-byte data key ``DK`` and a 16-byte random message nonce::

    okm          = HKDF-SHA-256(ikm = DK, salt = message nonce, info = "ehsm-kms stream v1", length = 40)
    message key  = okm[0:32]              (AES-256-GCM, one per message even when a data key is cached)
    nonce prefix = okm[32:40]
    chunk nonce  = nonce prefix ‖ u32be(chunk index)          (index 0 .. 2**32 - 2)
    header nonce = nonce prefix ‖ ff ff ff ff                 (never a chunk's)
    chunk AAD    = SHA-256(header) ‖ u32be(chunk index) ‖ u8(final: 1 for the last chunk, else 0)
    sealed chunk = AES-256-GCM(message key, chunk nonce, plaintext, chunk AAD) = ciphertext ‖ tag(16)
    header tag   = AES-256-GCM(message key, header nonce, "", AAD = header)  (the 16-byte tag alone)

Deriving a message key from the data key and the message nonce keeps nonces unique even when one cached data key
seals many messages: two messages share a GCM key only if they share a 128-bit random nonce. Every failure to open
a chunk or check a header tag raises :class:`ehsm_kms.errors.DecryptionFailed`, with no cause attached.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ehsm_kms import errors
from ehsm_kms.core.kdf import hkdf_sha256

DATA_KEY_BYTES = 32
MESSAGE_NONCE_BYTES = 16
MESSAGE_KEY_BYTES = 40  # AES-256 key ‖ 8-byte nonce prefix
TAG_BYTES = 16
MAX_CHUNK_INDEX = 0xFFFFFFFE
_HEADER_INDEX = 0xFFFFFFFF
_INFO = b"ehsm-kms stream v1"


def derive_message_key(data_key: bytes, message_nonce: bytes) -> bytes:
    """The 40 bytes (AES-256 key ‖ nonce prefix) that seal one message's header and chunks."""
    if len(data_key) != DATA_KEY_BYTES or len(message_nonce) != MESSAGE_NONCE_BYTES:
        raise errors.CryptoError()
    return hkdf_sha256(bytes(data_key), bytes(message_nonce), _INFO, MESSAGE_KEY_BYTES)


def chunk_aad(header_digest: bytes, index: int, final: bool) -> bytes:
    """The associated data of chunk ``index``: the header's SHA-256, the index and the final-chunk flag."""
    return bytes(header_digest) + struct.pack(">IB", index, 1 if final else 0)


def _parts(message_key: bytes, index: int) -> tuple[AESGCM, bytes]:
    if len(message_key) != MESSAGE_KEY_BYTES:
        raise errors.CryptoError()
    return AESGCM(bytes(message_key[:32])), bytes(message_key[32:]) + struct.pack(">I", index)


def seal_chunk(message_key: bytes, header_digest: bytes, index: int, final: bool, plaintext: bytes) -> bytes:
    """``ciphertext ‖ tag`` of chunk ``index`` of a message."""
    if not 0 <= index <= MAX_CHUNK_INDEX:
        raise errors.CryptoError()
    aead, nonce = _parts(message_key, index)
    return aead.encrypt(nonce, plaintext, chunk_aad(header_digest, index, final))


def open_chunk(message_key: bytes, header_digest: bytes, index: int, final: bool, sealed: bytes) -> bytes:
    """The plaintext of chunk ``index``; :class:`errors.DecryptionFailed` if anything about it is wrong."""
    if not 0 <= index <= MAX_CHUNK_INDEX or len(sealed) < TAG_BYTES:
        raise errors.DecryptionFailed()
    aead, nonce = _parts(message_key, index)
    try:
        return aead.decrypt(nonce, sealed, chunk_aad(header_digest, index, final))
    except (InvalidTag, ValueError, OverflowError):
        raise errors.DecryptionFailed() from None


def header_tag(message_key: bytes, header: bytes) -> bytes:
    """The 16-byte tag that authenticates a message header."""
    aead, nonce = _parts(message_key, _HEADER_INDEX)
    return aead.encrypt(nonce, b"", bytes(header))


def check_header_tag(message_key: bytes, header: bytes, tag: bytes) -> None:
    """Raise :class:`errors.DecryptionFailed` unless ``tag`` authenticates ``header`` under this message key."""
    if len(tag) != TAG_BYTES:
        raise errors.DecryptionFailed()
    aead, nonce = _parts(message_key, _HEADER_INDEX)
    try:
        aead.decrypt(nonce, bytes(tag), bytes(header))
    except (InvalidTag, ValueError):
        raise errors.DecryptionFailed() from None


# ---------------------------------------------------------------- BYOK
def wrap_key_material(pubkey_pem: str, material: bytes, padding_mode: str) -> bytes:
    """Key material encrypted to the wrapping public key from GetParametersForImport.

    ``padding_mode`` is ``EH_RSA_PKCS1_OAEP`` (OAEP with SHA-256 and MGF1-SHA-256, empty label: what the server
    unwraps) or ``EH_RSA_PKCS1`` (PKCS#1 v1.5).
    """
    try:
        public = serialization.load_pem_public_key(pubkey_pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise errors.CryptoError("the wrapping public key is not a PEM RSA public key") from None
    if not isinstance(public, rsa.RSAPublicKey):
        raise errors.CryptoError("the wrapping public key is not an RSA key")
    scheme: asym_padding.AsymmetricPadding
    if padding_mode == "EH_RSA_PKCS1_OAEP":
        scheme = asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    elif padding_mode == "EH_RSA_PKCS1":
        scheme = asym_padding.PKCS1v15()
    else:
        raise errors.CryptoError(f"padding mode {padding_mode} cannot wrap key material")
    try:
        return public.encrypt(bytes(material), scheme)
    except ValueError:
        raise errors.CryptoError("the key material is too long for the wrapping key") from None
