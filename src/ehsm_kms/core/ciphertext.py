"""The symmetric ciphertext format of Encrypt and the data-key actions.

Clients treat a ciphertext as opaque bytes (contract section 4.5), so we are free to give it a header the
original's ``ciphertext ‖ IV ‖ tag`` lacks. We need two things from it: the key version, so that a CMK can be
rotated and old ciphertexts still find the version that made them; and a format id, so that a ciphertext is
never opened by the wrong construction and the format can change later without guessing. The header is
authenticated by every format (it is part of the AES-GCM associated data and of the SM4 formats' MAC input),
so a changed version or format byte makes decryption fail instead of selecting another key.

Layout (all integers big-endian)::

    offset  size  field
    0       1     format id (see Format)
    1       4     key version, u32
    5       n     nonce ‖ payload ‖ tag, sized by the format:

    format                 id    nonce  payload                        tag   total for an n-byte plaintext
    AES_GCM                0x01  12     AES-GCM ciphertext, n          16    n + 33
    SM4_CTR_HMAC_SM3       0x02  16     SM4-CTR ciphertext, n          32    n + 53
    SM4_CBC_HMAC_SM3       0x03  16     SM4-CBC, PKCS#7, 16*(n//16+1)  32    16*(n//16+1) + 53

What the nonce, payload and tag mean is the business of :mod:`ehsm_kms.core.aes` and :mod:`ehsm_kms.core.sm4`;
this module only knows their sizes, so that a ciphertext can be split (and its key version read) without any
cryptographic library. Outer layers call :func:`key_version` to pick the key version row before they call the
core; that is why this module must never import ``cryptography``.

Every malformed input raises :class:`ehsm_kms.errors.DecryptionFailed` with its default message, the one error
of every failed decryption (invariant 7).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ehsm_kms import errors
from ehsm_kms.core.specs import KeySpec

HEADER_LEN = 5
KEY_VERSION_MAX = 0xFFFF_FFFF

_HEADER = struct.Struct(">BI")


class Format(enum.IntEnum):
    AES_GCM = 0x01
    SM4_CTR_HMAC_SM3 = 0x02
    SM4_CBC_HMAC_SM3 = 0x03


@dataclass(frozen=True, slots=True)
class Layout:
    nonce_len: int
    tag_len: int
    block: int  # the payload length is a multiple of this
    min_payload: int


LAYOUTS: dict[Format, Layout] = {
    Format.AES_GCM: Layout(nonce_len=12, tag_len=16, block=1, min_payload=0),
    Format.SM4_CTR_HMAC_SM3: Layout(nonce_len=16, tag_len=32, block=1, min_payload=0),
    # PKCS#7 always adds at least one byte, so a CBC payload is at least one block.
    Format.SM4_CBC_HMAC_SM3: Layout(nonce_len=16, tag_len=32, block=16, min_payload=16),
}

_FORMAT_OF_SPEC: dict[KeySpec, Format] = {
    KeySpec.EH_AES_GCM_128: Format.AES_GCM,
    KeySpec.EH_AES_GCM_192: Format.AES_GCM,
    KeySpec.EH_AES_GCM_256: Format.AES_GCM,
    KeySpec.EH_SM4_CTR: Format.SM4_CTR_HMAC_SM3,
    KeySpec.EH_SM4_CBC: Format.SM4_CBC_HMAC_SM3,
}


@dataclass(frozen=True, slots=True)
class Parsed:
    format: Format
    key_version: int
    header: bytes  # the first HEADER_LEN bytes, which every format authenticates
    nonce: bytes
    payload: bytes
    tag: bytes


def format_for(spec: KeySpec) -> Format:
    """The format a key of ``spec`` writes; :class:`errors.CryptoError` for a spec that does not encrypt."""
    try:
        return _FORMAT_OF_SPEC[spec]
    except KeyError:
        raise errors.CryptoError() from None


def header(fmt: Format, key_version: int) -> bytes:
    """The authenticated header; a key version outside u32 is a caller's bug, not a decryption failure."""
    if not 0 <= key_version <= KEY_VERSION_MAX:
        raise errors.CryptoError()
    return _HEADER.pack(fmt, key_version)


def pack(head: bytes, nonce: bytes, payload: bytes, tag: bytes) -> bytes:
    return head + nonce + payload + tag


def parse(ciphertext: bytes, expected: Format | None = None) -> Parsed:
    """Split a ciphertext into its parts; anything malformed (or of another format) is a failed decryption."""
    if len(ciphertext) < HEADER_LEN:
        raise errors.DecryptionFailed()
    fmt_id, version = _HEADER.unpack_from(ciphertext)
    try:
        fmt = Format(fmt_id)
    except ValueError:
        raise errors.DecryptionFailed() from None
    if expected is not None and fmt is not expected:
        raise errors.DecryptionFailed()
    lay = LAYOUTS[fmt]
    payload_len = len(ciphertext) - HEADER_LEN - lay.nonce_len - lay.tag_len
    if payload_len < lay.min_payload or payload_len % lay.block:
        raise errors.DecryptionFailed()
    start = HEADER_LEN + lay.nonce_len
    end = start + payload_len
    return Parsed(
        format=fmt,
        key_version=version,
        header=bytes(ciphertext[:HEADER_LEN]),
        nonce=bytes(ciphertext[HEADER_LEN:start]),
        payload=bytes(ciphertext[start:end]),
        tag=bytes(ciphertext[end:]),
    )


def key_version(ciphertext: bytes) -> int:
    """The key version a ciphertext claims. Not a proof of anything: decryption authenticates it."""
    return parse(ciphertext).key_version


def ciphertext_length(spec: KeySpec, plaintext_len: int) -> int:
    """Length of the ciphertext of a ``plaintext_len``-byte plaintext, for the wire layer's size limits."""
    lay = LAYOUTS[format_for(spec)]
    payload = plaintext_len if lay.block == 1 else lay.block * (plaintext_len // lay.block + 1)
    return HEADER_LEN + lay.nonce_len + payload + lay.tag_len
