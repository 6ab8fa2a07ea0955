"""Keyblobs: key material wrapped under the domain key and bound to its row (DESIGN invariant 3).

The original's blob authenticated nothing but the material: its metadata header could be flipped, and a blob
could be moved to another key's row or another app. Here the whole context of a blob is GCM associated data,
so a blob opens only for the exact purpose, key, app, spec, usage, origin and key version it was made for,
and only under the DK version it names.

Blob layout, all integers big-endian::

    offset  size  field
    0       4     magic b"EHKB"
    4       1     format version (1)
    5       4     DK version (u32) that wrapped the material
    9       12    nonce (random, made here; never passed in)
    21      n     AES-256-GCM ciphertext of the material (n = len(material))
    21+n    16    GCM tag

Associated data (never stored; rebuilt from the binding on unwrap)::

    b"EHKB" || format version (u8) || DK version (u32)
    || len(purpose) (u32) || purpose (UTF-8)
    || len(keyid) (u32) || keyid (UTF-8)
    || len(appid) (u32) || appid (UTF-8)
    || keyspec (u32) || usage (u32) || origin (u32) || key version (u32)

Every variable-length field is length-prefixed and every number has a fixed width, so two different bindings
never encode to the same bytes. The header is inside the associated data too, so changing the DK version or
format byte fails like any other change. Every failure to unwrap is the same
:class:`~ehsm_kms.errors.CryptoError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from ehsm_kms import errors
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.secret import SecretBytes

MAGIC = b"EHKB"
FORMAT_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16

_HEADER = struct.Struct(">4sBI")
HEADER_SIZE = _HEADER.size + NONCE_SIZE  # 21
OVERHEAD = HEADER_SIZE + TAG_SIZE  # 37

_U32 = struct.Struct(">I")
_TRAILER = struct.Struct(">IIII")


@dataclass(frozen=True, slots=True)
class Binding:
    """What a blob is bound to; ``purpose`` separates kinds of blob ("cmk", "apikey", "import", ...)."""

    purpose: str
    keyid: str
    appid: str
    keyspec: int
    usage: int
    origin: int
    key_version: int


def wrap(ring: DomainKeyRing, binding: Binding, material: bytes) -> bytes:
    """Wrap ``material`` under the ring's current DK, bound to ``binding``."""
    return _wrap_with_nonce(ring, ring.current_version, binding, material, os.urandom(NONCE_SIZE))


def unwrap(ring: DomainKeyRing, binding: Binding, blob: bytes) -> SecretBytes:
    """The material of ``blob`` if it was made for exactly ``binding``; else CryptoError, for any cause."""
    try:
        magic, fmt, version = _HEADER.unpack_from(blob)
        if magic != MAGIC or fmt != FORMAT_VERSION or len(blob) < OVERHEAD:
            raise errors.CryptoError()
        nonce = blob[_HEADER.size : HEADER_SIZE]
        aad = associated_data(version, binding)
        return SecretBytes(ring.aead(version).decrypt(nonce, blob[HEADER_SIZE:], aad))
    except (errors.CryptoError, InvalidTag, struct.error, TypeError, ValueError, UnicodeError):
        raise errors.CryptoError() from None


def dk_version(blob: bytes) -> int:
    """The DK version a blob names (unauthenticated until :func:`unwrap`): whether it needs a rewrap."""
    try:
        magic, fmt, version = _HEADER.unpack_from(blob)
    except (struct.error, TypeError):
        raise errors.CryptoError() from None
    if magic != MAGIC or fmt != FORMAT_VERSION or len(blob) < OVERHEAD:
        raise errors.CryptoError()
    return int(version)


def rewrap(ring: DomainKeyRing, binding: Binding, blob: bytes) -> bytes:
    """``blob`` wrapped under the ring's current DK (after a rotation).

    The blob is authenticated first; one already under the current DK comes back unchanged, so a caller can
    compare to skip writing it back.
    """
    material = unwrap(ring, binding, blob)
    if dk_version(blob) == ring.current_version:
        return blob
    return wrap(ring, binding, material.reveal())


def associated_data(dk_version: int, binding: Binding) -> bytes:
    """The canonical encoding of a blob's context (module docstring); CryptoError if a field does not fit."""
    numbers = (dk_version, binding.keyspec, binding.usage, binding.origin, binding.key_version)
    if any(type(n) is bool for n in numbers) or not binding.purpose:
        raise errors.CryptoError()
    try:
        purpose = binding.purpose.encode("utf-8")
        keyid = binding.keyid.encode("utf-8")
        appid = binding.appid.encode("utf-8")
        return b"".join(
            (
                _HEADER.pack(MAGIC, FORMAT_VERSION, dk_version),
                _U32.pack(len(purpose)),
                purpose,
                _U32.pack(len(keyid)),
                keyid,
                _U32.pack(len(appid)),
                appid,
                _TRAILER.pack(binding.keyspec, binding.usage, binding.origin, binding.key_version),
            )
        )
    except (AttributeError, UnicodeEncodeError, struct.error):
        # Not a str, not encodable, not an integer in 0..2**32-1 (struct refuses those, floats included).
        raise errors.CryptoError() from None


def _wrap_with_nonce(ring: DomainKeyRing, version: int, binding: Binding, material: bytes, nonce: bytes) -> bytes:
    """:func:`wrap` with the DK version and nonce chosen by the caller: golden vectors only, never keys."""
    if len(nonce) != NONCE_SIZE or not isinstance(material, bytes | bytearray | memoryview):
        raise errors.CryptoError()
    aad = associated_data(version, binding)
    sealed = ring.aead(version).encrypt(nonce, bytes(material), aad)
    return _HEADER.pack(MAGIC, FORMAT_VERSION, version) + nonce + sealed
