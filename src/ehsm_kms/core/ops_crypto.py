"""Core operations that use keys: symmetric and asymmetric encryption, data keys, signatures, MACs, random."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ehsm_kms import errors
from ehsm_kms.core import ciphertext, families, mac
from ehsm_kms.core.enclave_util import asymmetric_key, b64decode, b64encode, payload_enum
from ehsm_kms.core.registry import handler
from ehsm_kms.core.specs import (
    LIMITS,
    DigestMode,
    Family,
    KeySpec,
    KeyUsage,
    MessageType,
    Op,
    Origin,
    PaddingMode,
    allows,
    info,
)

if TYPE_CHECKING:
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.protocol import Call, KeyRef

# Spellings of ExportDataKey's old data key that existing clients send (contract 3.4).
OLD_DATAKEY_FIELDS = ("olddatakey_base", "olddatakey", "old_data_key")


def _require(ref: KeyRef, op: Op, *, internal: bool = False) -> KeySpec:
    spec = KeySpec(ref.keyspec)
    origin = Origin(ref.origin)
    if not allows(spec, KeyUsage(ref.usage), origin, op):
        raise errors.CryptoError()
    if internal and origin is not Origin.EH_INTERNAL_KEY:
        raise errors.CryptoError()
    return spec


def _aad(payload: dict[str, Any]) -> bytes:
    aad = b64decode(payload.get("aad"))
    if len(aad) > LIMITS.aad_max:
        raise errors.CryptoError()
    return aad


def _encrypt(enc: Enclave, ref: KeyRef, plaintext: bytes, aad: bytes) -> bytes:
    spec = KeySpec(ref.keyspec)
    key = enc.open_key(ref)
    return families.encrypt(spec, key.reveal(), plaintext, aad, ref.version)


def _decrypt(enc: Enclave, ref: KeyRef, data: bytes, aad: bytes) -> bytes:
    if ciphertext.key_version(data) != ref.version:
        raise errors.DecryptionFailed()
    key = enc.open_key(ref)
    return families.decrypt(KeySpec(ref.keyspec), key.reveal(), data, aad)


@handler("encrypt")
def encrypt(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    _require(ref, Op.ENCRYPT)
    plaintext = b64decode(payload.get("plaintext"))
    if not 1 <= len(plaintext) <= LIMITS.encrypt_plaintext_max:
        raise errors.CryptoError()
    return {"ciphertext": b64encode(_encrypt(enc, ref, plaintext, _aad(payload)))}


@handler("decrypt")
def decrypt(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    _require(ref, Op.ENCRYPT)
    data = b64decode(payload.get("ciphertext"))
    return {"plaintext": b64encode(_decrypt(enc, ref, data, _aad(payload)))}


def _data_key(enc: Enclave, call: Call) -> tuple[bytes, bytes]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    _require(ref, Op.ENCRYPT, internal=True)
    keylen = payload.get("keylen")
    if not isinstance(keylen, int) or isinstance(keylen, bool):
        raise errors.CryptoError()
    if not LIMITS.datakey_min <= keylen <= LIMITS.datakey_max:
        raise errors.CryptoError()
    datakey = os.urandom(keylen)
    return datakey, _encrypt(enc, ref, datakey, _aad(payload))


@handler("generate_data_key")
def generate_data_key(enc: Enclave, call: Call) -> dict[str, Any]:
    datakey, wrapped = _data_key(enc, call)
    return {"ciphertext": b64encode(wrapped), "plaintext": b64encode(datakey)}


@handler("generate_data_key_without_plaintext")
def generate_data_key_without_plaintext(enc: Enclave, call: Call) -> dict[str, Any]:
    _, wrapped = _data_key(enc, call)
    return {"ciphertext": b64encode(wrapped)}


def _asym_encrypt(key: Any, spec: KeySpec, plaintext: bytes, padding: PaddingMode) -> bytes:
    if info(spec).family is Family.SM2:
        data: bytes = key.encrypt(plaintext)
    else:
        data = key.encrypt(plaintext, padding)
    return data


@handler("export_data_key")
def export_data_key(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    uref = enc.key_ref(call, payload, index=1, field="ukeyid")
    _require(ref, Op.ENCRYPT, internal=True)
    uspec = _require(uref, Op.ASYM_ENCRYPT, internal=True)
    old = next((payload[f] for f in OLD_DATAKEY_FIELDS if payload.get(f)), None)
    try:
        datakey = _decrypt(enc, ref, b64decode(old), _aad(payload))
    except errors.EhsmError:
        raise errors.DataKeyFailed() from None
    # RSA always uses OAEP-SHA-256 here, whatever padding the caller names (as the original).
    newkey = _asym_encrypt(asymmetric_key(enc, uref), uspec, datakey, PaddingMode.EH_RSA_PKCS1_OAEP)
    return {"newdatakey": b64encode(newkey)}


@handler("asymmetric_encrypt")
def asymmetric_encrypt(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    spec = _require(ref, Op.ASYM_ENCRYPT)
    padding = payload_enum(PaddingMode, payload, "padding_mode")
    plaintext = b64decode(payload.get("plaintext"))
    if not plaintext:
        raise errors.CryptoError()
    return {"ciphertext": b64encode(_asym_encrypt(asymmetric_key(enc, ref), spec, plaintext, padding))}


@handler("asymmetric_decrypt")
def asymmetric_decrypt(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    spec = _require(ref, Op.ASYM_ENCRYPT)
    padding = payload_enum(PaddingMode, payload, "padding_mode")
    data = b64decode(payload.get("ciphertext"))
    key = asymmetric_key(enc, ref)
    plaintext: bytes = key.decrypt(data) if info(spec).family is Family.SM2 else key.decrypt(data, padding)
    return {"plaintext": b64encode(plaintext)}


def _sign_args(payload: dict[str, Any]) -> tuple[bytes, MessageType, DigestMode, PaddingMode]:
    message = b64decode(payload.get("message"))
    if not 1 <= len(message) <= LIMITS.sign_message_max:
        raise errors.CryptoError()
    return (
        message,
        payload_enum(MessageType, payload, "message_type"),
        payload_enum(DigestMode, payload, "digest_mode"),
        payload_enum(PaddingMode, payload, "padding_mode"),
    )


@handler("sign")
def sign(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    _require(ref, Op.SIGN)
    message, mtype, digest, padding = _sign_args(payload)
    signature: bytes = asymmetric_key(enc, ref).sign(message, mtype, digest, padding)
    return {"signature": b64encode(signature)}


@handler("verify")
def verify(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    if payload.get("keyversion") not in (None, "", ref.version):  # the version the caller asked for, no other
        raise errors.KeyVersionInvalid()
    _require(ref, Op.SIGN)
    message, mtype, digest, padding = _sign_args(payload)
    signature = b64decode(payload.get("signature"))
    if not 1 <= len(signature) <= LIMITS.signature_max:
        raise errors.CryptoError()
    ok: bool = asymmetric_key(enc, ref).verify(message, mtype, digest, padding, signature)
    return {"result": bool(ok)}


def _mac_args(enc: Enclave, call: Call) -> tuple[dict[str, Any], bytes, DigestMode, bytes]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    _require(ref, Op.MAC)
    digest = DigestMode.EH_SHA_256
    if payload.get("digest_mode"):
        digest = payload_enum(DigestMode, payload, "digest_mode")
    message = b64decode(payload.get("message"))
    if not message:
        raise errors.CryptoError()
    return payload, enc.open_key(ref).reveal(), digest, message


@handler("generate_mac")
def generate_mac(enc: Enclave, call: Call) -> dict[str, Any]:
    _, key, digest, message = _mac_args(enc, call)
    return {"mac": b64encode(mac.mac(key, digest, message))}


@handler("verify_mac")
def verify_mac(enc: Enclave, call: Call) -> dict[str, Any]:
    payload, key, digest, message = _mac_args(enc, call)
    if payload.get("keyversion") not in (None, "", enc.key_ref(call, payload).version):
        raise errors.KeyVersionInvalid()
    return {"result": mac.verify(key, digest, message, b64decode(payload.get("mac")))}


@handler("generate_random")
def generate_random(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    length = payload.get("length")
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= LIMITS.random_max:
        raise errors.CryptoError()
    return {"random": b64encode(os.urandom(length))}
