"""Core operations for key versions: a new version of a CMK (RotateKey, automatic rotation) and ReEncrypt.

A new version is fresh material for the *same* key: the blob is bound to the same keyid, app, spec, usage and
origin as the current primary, with the next version number. The current primary must open first, which proves
that metadata is the key's own (a changed row would not open), so a rotation can never change what a key is or
whose it is.

ReEncrypt decrypts and encrypts inside the core in one operation: the plaintext never leaves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ehsm_kms import errors
from ehsm_kms.core import families
from ehsm_kms.core.enclave_util import b64decode, b64encode
from ehsm_kms.core.ops_crypto import _aad, _decrypt, _encrypt, _require
from ehsm_kms.core.registry import handler
from ehsm_kms.core.specs import LIMITS, KeySpec, Op, Origin

if TYPE_CHECKING:
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.protocol import Call, KeyRef


def _new_version(enc: Enclave, ref: KeyRef, call: Call) -> dict[str, Any]:
    from ehsm_kms.core.protocol import KeyRef

    version = call.args.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version != ref.version + 1:
        raise errors.CryptoError()
    if Origin(ref.origin) is not Origin.EH_INTERNAL_KEY:
        raise errors.KeyRotationRefused()
    enc.open_key(ref)  # raises unless the row is the key's own
    new = KeyRef(ref.keyid, ref.appid, ref.keyspec, ref.usage, ref.origin, version, b"")
    return {"blob": enc.wrap_cmk(new, families.generate(KeySpec(ref.keyspec))), "version": version}


@handler("rotate_key")
def rotate_key(enc: Enclave, call: Call) -> dict[str, Any]:
    """RotateKey: the app's signed request names the key; ``keys[0]`` is its current primary version."""
    payload = enc.payload(call)
    return _new_version(enc, enc.key_ref(call, payload), call)


@handler("auto_rotate_key")
def auto_rotate_key(enc: Enclave, call: Call) -> dict[str, Any]:
    """The scheduler's rotation, with no request behind it. It reveals nothing and needs no app signature (like
    ``rewrap``): the only thing it can do is give a key a new version of its own."""
    if not call.keys:
        raise errors.KeyNotFound()
    return _new_version(enc, call.keys[0], call)


@handler("re_encrypt")
def re_encrypt(enc: Enclave, call: Call) -> dict[str, Any]:
    """``keys[0]``: the version the ciphertext names; ``keys[1]``: the destination key's primary version (the
    ``destination_keyid`` of the payload, or the same key)."""
    payload = enc.payload(call)
    source = enc.key_ref(call, payload, 0, "keyid")
    dest_field = "destination_keyid" if payload.get("destination_keyid") else "keyid"
    dest = enc.key_ref(call, payload, 1, dest_field)
    _require(source, Op.ENCRYPT)
    _require(dest, Op.ENCRYPT)
    aad = _aad(payload)
    dest_aad = aad
    if payload.get("destination_aad"):
        dest_aad = b64decode(payload.get("destination_aad"))
        if len(dest_aad) > LIMITS.aad_max:
            raise errors.CryptoError()
    plaintext = _decrypt(enc, source, b64decode(payload.get("ciphertext")), aad)
    ciphertext = _encrypt(enc, dest, plaintext, dest_aad)
    return {"ciphertext": b64encode(ciphertext), "keyid": dest.keyid, "keyversion": dest.version}
