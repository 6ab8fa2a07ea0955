"""SM4 CMKs (EH_SM4_CTR, EH_SM4_CBC): Encrypt, Decrypt and the data-key actions.

The original encrypts with bare SM4-CTR or SM4-CBC and ignores ``aad``: its ciphertexts are malleable (a
flipped ciphertext bit flips the same plaintext bit in CTR) and CBC's padding check is an oracle. We keep the
modes, since the keyspec names them, and make both authenticated with encrypt-then-MAC, HMAC-SM3 checked
before anything is decrypted. Everything in these formats is a national algorithm (SM4, SM3, HKDF over
HMAC-SM3), so an SM-only deployment never depends on AES or SHA-2.

Keys. The 16-byte CMK ``K`` is never used directly. Two keys come from it, distinct per mode so that the same
imported bytes used as a CTR key and as a CBC key give unrelated keys::

    okm     = HKDF-SM3(ikm = K, salt = empty, info = INFO[mode], length = 48)
    enc_key = okm[0:16]   (SM4)
    mac_key = okm[16:48]  (HMAC-SM3)
    INFO[CTR] = b"ehsm-kms sm4-ctr hmac-sm3 v1", INFO[CBC] = b"ehsm-kms sm4-cbc hmac-sm3 v1"

Ciphertext, the ``SM4_CTR_HMAC_SM3`` (0x02) and ``SM4_CBC_HMAC_SM3`` (0x03) formats of
:mod:`ehsm_kms.core.ciphertext`::

    header(5)  = format id ‖ key version u32 BE
    iv(16)     = random; the initial counter block (CTR, counter = the whole block, big-endian) or the CBC IV
    payload    = SM4-CTR(enc_key, iv, plaintext)                 n bytes
               | SM4-CBC(enc_key, iv, PKCS#7(plaintext))         16 * (n // 16 + 1) bytes
    tag(32)    = HMAC-SM3(mac_key, header ‖ iv ‖ u64be(len(payload)) ‖ payload ‖ u64be(len(aad)) ‖ aad)
    ciphertext = header ‖ iv ‖ payload ‖ tag

Both variable-length fields carry their length in the MAC input, so no byte can move between payload and aad.
The tag is compared in constant time, and every failure, before or after the MAC check, raises the same
:class:`ehsm_kms.errors.DecryptionFailed` with no cause attached.
"""

from __future__ import annotations

import os
import struct

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ehsm_kms import errors
from ehsm_kms.core import ciphertext as ctfmt
from ehsm_kms.core import kat, kdf, mac
from ehsm_kms.core.specs import DigestMode, Family, KeySpec, info

KEY_LEN = 16
BLOCK = 16
IV_LEN = 16
TAG_LEN = 32

_INFO: dict[ctfmt.Format, bytes] = {
    ctfmt.Format.SM4_CTR_HMAC_SM3: b"ehsm-kms sm4-ctr hmac-sm3 v1",
    ctfmt.Format.SM4_CBC_HMAC_SM3: b"ehsm-kms sm4-cbc hmac-sm3 v1",
}
_U64 = struct.Struct(">Q")


def _format(spec: KeySpec) -> ctfmt.Format:
    if info(spec).family is not Family.SM4:
        raise errors.CryptoError()
    return ctfmt.format_for(spec)


# ---------------------------------------------------------------- the raw primitives
def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """SM4-CTR; the same function encrypts and decrypts."""
    c = Cipher(algorithms.SM4(key), modes.CTR(iv)).encryptor()
    return c.update(data) + c.finalize()


def _cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """SM4-CBC without padding (``data`` is whole blocks)."""
    c = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    return c.update(data) + c.finalize()


def _cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    c = Cipher(algorithms.SM4(key), modes.CBC(iv)).decryptor()
    return c.update(data) + c.finalize()


def _pad(data: bytes) -> bytes:
    p = padding.PKCS7(BLOCK * 8).padder()
    return p.update(data) + p.finalize()


def _unpad(data: bytes) -> bytes:
    u = padding.PKCS7(BLOCK * 8).unpadder()
    return u.update(data) + u.finalize()


def _subkeys(fmt: ctfmt.Format, key: bytes) -> tuple[bytes, bytes]:
    okm = kdf.hkdf_sm3(key, b"", _INFO[fmt], KEY_LEN + TAG_LEN)
    return okm[:KEY_LEN], okm[KEY_LEN:]


def _mac_input(head: bytes, iv: bytes, payload: bytes, aad: bytes) -> bytes:
    return b"".join((head, iv, _U64.pack(len(payload)), payload, _U64.pack(len(aad)), aad))


# ---------------------------------------------------------------- the public recipe
def generate_key(spec: KeySpec) -> bytes:
    _format(spec)
    return os.urandom(info(spec).key_bytes)


def encrypt(spec: KeySpec, key: bytes, plaintext: bytes, aad: bytes, key_version: int) -> bytes:
    return _encrypt_with_iv(spec, key, plaintext, aad, key_version, iv=os.urandom(IV_LEN))


def _encrypt_with_iv(spec: KeySpec, key: bytes, plaintext: bytes, aad: bytes, key_version: int, *, iv: bytes) -> bytes:
    """:func:`encrypt` with a given IV: for known-answer tests only (a repeated CTR IV leaks plaintext)."""
    fmt = _format(spec)
    if len(key) != KEY_LEN or len(iv) != IV_LEN:
        raise errors.CryptoError()
    head = ctfmt.header(fmt, key_version)
    enc_key, mac_key = _subkeys(fmt, key)
    if fmt is ctfmt.Format.SM4_CTR_HMAC_SM3:
        payload = _ctr(enc_key, iv, plaintext)
    else:
        payload = _cbc_encrypt(enc_key, iv, _pad(plaintext))
    tag = mac.mac(mac_key, DigestMode.EH_SM3, _mac_input(head, iv, payload, aad))
    return ctfmt.pack(head, iv, payload, tag)


def decrypt(spec: KeySpec, key: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    si = info(spec)
    if si.family is not Family.SM4 or len(key) != KEY_LEN:
        raise errors.DecryptionFailed()
    fmt = ctfmt.format_for(spec)
    parts = ctfmt.parse(ciphertext, fmt)
    enc_key, mac_key = _subkeys(fmt, key)
    mac_input = _mac_input(parts.header, parts.nonce, parts.payload, aad)
    if not mac.verify(mac_key, DigestMode.EH_SM3, mac_input, parts.tag):
        raise errors.DecryptionFailed()
    try:
        if fmt is ctfmt.Format.SM4_CTR_HMAC_SM3:
            return _ctr(enc_key, parts.nonce, parts.payload)
        return _unpad(_cbc_decrypt(enc_key, parts.nonce, parts.payload))
    except ValueError:
        # Only reachable with a forged tag; still the one error.
        raise errors.DecryptionFailed() from None


# ---------------------------------------------------------------- self-test
_SPECS = {"SM4-CTR": KeySpec.EH_SM4_CTR, "SM4-CBC": KeySpec.EH_SM4_CBC}


def self_test() -> None:
    """GB/T 32907 block known answer and our formats'; :class:`errors.CoreStartError` on a mismatch."""
    _run_kat(kat.load("sm4"))


def _run_kat(data: kat.Data) -> None:
    for case in data["cases"]:
        try:
            ok = _check(case)
        except Exception:
            ok = False
        if not ok:
            raise errors.CoreStartError("self-test failed: SM4")


def _check(case: kat.Data) -> bool:
    key, pt, expected = kat.unhex(case, "key"), kat.unhex(case, "plaintext"), kat.unhex(case, "expected")
    if case["kind"] == "block":
        # One CBC block under a zero IV is the bare block cipher; no ECB mode is needed anywhere.
        zero = bytes(BLOCK)
        return _cbc_encrypt(key, zero, pt) == expected and _cbc_decrypt(key, zero, expected) == pt
    spec = _SPECS[case["mode"]]
    iv, aad = kat.unhex(case, "iv"), kat.unhex(case, "aad")
    if _encrypt_with_iv(spec, key, pt, aad, case["key_version"], iv=iv) != expected:
        return False
    if decrypt(spec, key, expected, aad) != pt:
        return False
    try:
        decrypt(spec, key, expected[:-1] + bytes([expected[-1] ^ 1]), aad)
    except errors.DecryptionFailed:
        return True
    return False
