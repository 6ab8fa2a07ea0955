"""Core operations that make or change keys: enrollment, CreateKey, public keys, BYOK import, rewrap.

BYOK import token (our format, opaque to clients): ``base64(JSON {"keyid", "token_id", "expires", "dkv", "mac"})`` where
``mac`` = hex HMAC-SHA-256 under a key derived from domain-key version ``dkv`` (purpose ``ehsm-kms import token``;
the version is named so that a token survives a DK rotation) over the
length-prefixed fields (appid, keyid, key version, token_id, expires). The token is bound to the key and the app,
valid 24 hours, and single-use: the store hands the matching import record out once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import struct
import uuid
from typing import TYPE_CHECKING, Any

from ehsm_kms import errors
from ehsm_kms.core import families, keyblob, rsa
from ehsm_kms.core.enclave_util import asymmetric_key, b64decode, enum_arg, payload_enum
from ehsm_kms.core.registry import handler
from ehsm_kms.core.specs import (
    LIMITS,
    RSA_WRAPPING_SPECS,
    Family,
    KeySpec,
    KeyUsage,
    Op,
    Origin,
    PaddingMode,
    allows,
    can_create,
    info,
)
from ehsm_kms.core.tokens import parse_import_token

if TYPE_CHECKING:
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.protocol import Call

# The contract's APIKey alphabet (no I, O, l, o); secrets.choice draws without modulo bias.
APIKEY_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz"
APIKEY_LENGTH = 32
_TOKEN_PURPOSE = b"ehsm-kms import token"


@handler("enroll")
def enroll(enc: Enclave, call: Call) -> dict[str, Any]:
    from ehsm_kms.core.enclave import apikey_binding

    appid = str(uuid.uuid4())
    apikey = "".join(secrets.choice(APIKEY_ALPHABET) for _ in range(APIKEY_LENGTH))
    blob = keyblob.wrap(enc.ring, apikey_binding(appid), apikey.encode("ascii"))
    return {"appid": appid, "apikey": apikey, "apikey_blob": blob}


@handler("verify_request")
def verify_request(enc: Enclave, call: Call) -> dict[str, Any]:
    enc.authenticate(call)
    return {}


@handler("create_key")
def create_key(enc: Enclave, call: Call) -> dict[str, Any]:
    from ehsm_kms.core.protocol import KeyRef

    payload = enc.payload(call)
    spec = payload_enum(KeySpec, payload, "keyspec")
    origin = payload_enum(Origin, payload, "origin")
    usage = payload_enum(KeyUsage, payload, "keyusage")
    if not can_create(spec, usage, origin):
        raise errors.CryptoError()
    keyid = call.args.get("keyid")
    version = call.args.get("version", 1)
    auth = call.auth
    if not isinstance(keyid, str) or not isinstance(version, int) or auth is None:
        raise errors.CryptoError()
    blob = b""
    if origin is Origin.EH_INTERNAL_KEY:
        ref = KeyRef(keyid, auth.appid, int(spec), int(usage), int(origin), version, b"")
        blob = enc.wrap_cmk(ref, families.generate(spec))
    return {"blob": blob, "keyspec": spec.name, "usage": usage.name, "origin": origin.name}


@handler("get_public_key")
def get_public_key(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    spec, usage, origin = KeySpec(ref.keyspec), KeyUsage(ref.usage), Origin(ref.origin)
    if not allows(spec, usage, origin, Op.PUBLIC_KEY):
        raise errors.CryptoError()
    return {"pubkey": asymmetric_key(enc, ref).public_pem(), "keyid": ref.keyid}


def _token_mac(enc: Enclave, appid: str, keyid: str, version: int, token_id: str, expires: int, dk_version: int) -> str:
    fields = [appid.encode(), keyid.encode(), str(version).encode(), token_id.encode(), str(expires).encode()]
    message = b"".join(struct.pack(">I", len(f)) + f for f in fields)
    key = enc.ring.derive(_TOKEN_PURPOSE, version=dk_version)  # a token outlives a DK rotation
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _import_binding(ref_keyid: str, appid: str, wrapping_spec: int, version: int) -> keyblob.Binding:
    return keyblob.Binding(
        purpose="import",
        keyid=ref_keyid,
        appid=appid,
        keyspec=wrapping_spec,
        usage=int(KeyUsage.EH_KEYUSAGE_ENCRYPT_DECRYPT),
        origin=int(Origin.EH_INTERNAL_KEY),
        key_version=version,
    )


@handler("get_parameters_for_import")
def get_parameters_for_import(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    wrapping_spec = payload_enum(KeySpec, payload, "keyspec")
    target = KeySpec(ref.keyspec)
    if (
        wrapping_spec not in RSA_WRAPPING_SPECS
        or Origin(ref.origin) is not Origin.EH_EXTERNAL_KEY
        or not info(target).importable
        or ref.blob  # imported material is never replaced (the original silently overwrote it)
    ):
        raise errors.CryptoError()
    material = rsa.generate_key(wrapping_spec)
    wrapping_key = rsa.load(wrapping_spec, material)
    wrapping_blob = keyblob.wrap(
        enc.ring, _import_binding(ref.keyid, ref.appid, int(wrapping_spec), ref.version), material
    )
    token_id = secrets.token_hex(16)
    expires = enc.clock_ms() + LIMITS.import_token_validity_ms
    dkv = enc.ring.current_version
    mac = _token_mac(enc, ref.appid, ref.keyid, ref.version, token_id, expires, dkv)
    token = {"keyid": ref.keyid, "token_id": token_id, "expires": expires, "dkv": dkv, "mac": mac}
    return {
        "pubkey": wrapping_key.public_pem(),
        "importToken": base64.b64encode(json.dumps(token, separators=(",", ":")).encode()).decode(),
        "wrapping_blob": wrapping_blob,
        "wrapping_spec": wrapping_spec.name,
        "token_id": token_id,
        "expires_ms": expires,
    }


@handler("import_key_material")
def import_key_material(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = enc.payload(call)
    ref = enc.key_ref(call, payload)
    # Both spellings existing clients send (the contract's code reads importToken, its docs say ImportToken).
    token = parse_import_token(payload.get("importToken") or payload.get("ImportToken"))
    try:
        expected = _token_mac(enc, ref.appid, ref.keyid, ref.version, token["token_id"], token["expires"], token["dkv"])
    except errors.EhsmError:
        raise errors.ImportTokenError() from None
    if (
        not hmac.compare_digest(expected.encode(), token["mac"].encode())
        or token["keyid"] != ref.keyid
        or token["token_id"] != call.args.get("token_id")
        or token["expires"] != call.args.get("expires_ms")
    ):
        raise errors.ImportTokenError()
    if enc.clock_ms() > token["expires"]:
        raise errors.ImportTokenExpired()
    if Origin(ref.origin) is not Origin.EH_EXTERNAL_KEY or ref.blob:
        raise errors.ImportFailed()
    wrapping_spec = enum_arg(KeySpec, call.args, "wrapping_spec")
    padding = payload_enum(PaddingMode, payload, "padding_mode")
    if padding not in (PaddingMode.EH_RSA_PKCS1, PaddingMode.EH_RSA_PKCS1_OAEP):
        raise errors.ImportFailed()
    wrapping_blob = call.args.get("wrapping_blob")
    if not isinstance(wrapping_blob, bytes):
        raise errors.ImportFailed()
    try:
        material = keyblob.unwrap(
            enc.ring, _import_binding(ref.keyid, ref.appid, int(wrapping_spec), ref.version), wrapping_blob
        )
        wrapping_key = rsa.load(wrapping_spec, material.reveal())
        key_material = wrapping_key.decrypt(b64decode(payload.get("key_material")), padding)
    except errors.EhsmError:
        raise errors.ImportFailed() from None
    target = info(KeySpec(ref.keyspec))
    valid = 16 <= len(key_material) <= 64 if target.family is Family.HMAC else len(key_material) == target.key_bytes
    if not valid:
        raise errors.ImportFailed()
    return {"blob": enc.wrap_cmk(ref, key_material)}


@handler("rewrap")
def rewrap(enc: Enclave, call: Call) -> dict[str, Any]:
    """Blobs rewrapped to the current DK version (nothing is revealed, so no app signature is needed)."""
    from ehsm_kms.core.enclave import cmk_binding

    return {"blobs": [keyblob.rewrap(enc.ring, cmk_binding(ref), ref.blob) for ref in call.keys if ref.blob]}


@handler("status")
def status(enc: Enclave, call: Call) -> dict[str, Any]:
    return {"dk_version": enc.ring.current_version, "self_tests": list(enc.self_test_report)}
