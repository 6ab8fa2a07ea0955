"""Core operations of the secret manager: the app's default secret key, sealing and opening secret values.

The original encrypted a secret's value with ``aad = ''``, so a database writer could move a value to another
secret, another version or another app's secret. Here a value is sealed under the chosen CMK (or the app's
default secret key) with associated data that names its place, so a value opens only where it was put::

    b"ehsm-kms secret v1" || u32 len(appid) || appid || u32 len(secret_id) || secret_id
    || u32 len(name) || name || u32 version                  (strings UTF-8, integers big-endian)

The name and the value come from the caller's signed payload (``secretName``, ``secretData``), never from the
outer layer; the secret's id and the version number are the server's values (``args``). The ciphertext is the
format of the key's family (:mod:`ehsm_kms.core.ciphertext`: AES-GCM, or SM4 with HMAC-SM3), whose header names
the CMK version, so a secret outlives a rotation of its CMK.

Keys. A CMK must belong to the caller's app, be the one the payload names (when it names one) and be a symmetric
ENCRYPT_DECRYPT key with its material (the original checked none of this); the outer layer checks that it is
enabled and not expired, as for Encrypt. The default secret key (the original's ``sm_default_cmk``) is an
AES-256 key made here on the app's first secret, wrapped under the DK and bound to the app (purpose
``secret-default-key``); it is no CMK, so no key action can name it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Final

from ehsm_kms import errors
from ehsm_kms.core import ciphertext, families, keyblob
from ehsm_kms.core.registry import handler
from ehsm_kms.core.secret import SecretBytes
from ehsm_kms.core.specs import KeySpec, KeyUsage, Op, Origin, allows

if TYPE_CHECKING:
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.protocol import Call, SignedRequest

# The contract's messages (section 6.1) for a key that cannot seal a secret; the service refuses such keys with the
# same texts before it calls the core (service/secrets.py cannot import this module: it would load the primitives).
CMK_NOT_FOUND: Final = "Cannot find cmk by keyid."
WRONG_KEY: Final = "Wrong parameter, please check your encryptionKeyId."
DEFAULT_KEY_MISSING: Final = "Cannot find default CMK."

DEFAULT_KEY_PURPOSE: Final = "secret-default-key"
DEFAULT_KEY_SPEC: Final = KeySpec.EH_AES_GCM_256
_DEFAULT_KEY_VERSION: Final = 1
_AAD_DOMAIN: Final = b"ehsm-kms secret v1"
_U32: Final = struct.Struct(">I")


def default_key_binding(appid: str) -> keyblob.Binding:
    return keyblob.Binding(
        purpose=DEFAULT_KEY_PURPOSE,
        keyid=appid,
        appid=appid,
        keyspec=int(DEFAULT_KEY_SPEC),
        usage=int(KeyUsage.EH_KEYUSAGE_ENCRYPT_DECRYPT),
        origin=int(Origin.EH_INTERNAL_KEY),
        key_version=_DEFAULT_KEY_VERSION,
    )


def secret_aad(appid: str, secret_id: str, name: str, version: int) -> bytes:
    """The associated data of a secret value (module docstring); CryptoError for a field that does not fit."""
    try:
        parts = [_AAD_DOMAIN]
        for text in (appid, secret_id, name):
            data = text.encode("utf-8")
            parts += [_U32.pack(len(data)), data]
        parts.append(_U32.pack(version))
        return b"".join(parts)
    except (AttributeError, UnicodeEncodeError, struct.error):
        raise errors.CryptoError() from None


def _place(call: Call, payload: dict[str, Any]) -> tuple[str, str, int]:
    """The signed name, and the server's secret id and version number."""
    name = payload.get("secretName")
    secret_id = call.args.get("secret_id")
    version = call.args.get("version")
    if not isinstance(name, str) or not name or not isinstance(secret_id, str) or not secret_id:
        raise errors.CryptoError()
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise errors.CryptoError()
    return name, secret_id, version


def _sealing_key(enc: Enclave, call: Call, auth: SignedRequest, named: str | None) -> tuple[KeySpec, SecretBytes, int]:
    """The key, its spec and the key version that seal (or open) this app's secret value; ``named`` is the CMK
    the signed payload chose (CreateSecret's ``encryptionKeyId``), which the key given must then be."""
    if call.keys:
        ref = call.keys[0]
        if ref.appid != auth.appid or (named and ref.keyid != named):
            raise errors.BadRequest(CMK_NOT_FOUND)  # another app's key answers like an unknown one
        try:
            spec, usage, origin = KeySpec(ref.keyspec), KeyUsage(ref.usage), Origin(ref.origin)
        except ValueError:
            raise errors.BadRequest(WRONG_KEY) from None
        if not allows(spec, usage, origin, Op.ENCRYPT) or not ref.blob:
            raise errors.BadRequest(WRONG_KEY)
        return spec, enc.open_key(ref), ref.version
    if named:
        raise errors.BadRequest(CMK_NOT_FOUND)  # the payload chose a CMK and none was given
    blob = call.args.get("default_key")
    if not isinstance(blob, bytes) or not blob:
        raise errors.BadRequest(DEFAULT_KEY_MISSING)
    return DEFAULT_KEY_SPEC, keyblob.unwrap(enc.ring, default_key_binding(auth.appid), blob), _DEFAULT_KEY_VERSION


def _signed(enc: Enclave, call: Call) -> tuple[SignedRequest, dict[str, Any]]:
    payload = enc.payload(call)  # checks the signature first
    auth = call.auth
    if auth is None:  # pragma: no cover - payload() refused it already
        raise errors.SignError()
    return auth, payload


@handler("make_secret_key")
def make_secret_key(enc: Enclave, call: Call) -> dict[str, Any]:
    """A new default secret key for the caller's app; the store keeps the first one made (another node may race)."""
    auth, _ = _signed(enc, call)
    material = families.generate(DEFAULT_KEY_SPEC)
    return {"blob": keyblob.wrap(enc.ring, default_key_binding(auth.appid), material)}


@handler("seal_secret")
def seal_secret(enc: Enclave, call: Call) -> dict[str, Any]:
    """The signed ``secretData`` sealed for (app, secret id, signed name, version)."""
    auth, payload = _signed(enc, call)
    name, secret_id, version = _place(call, payload)
    data = payload.get("secretData")
    if not isinstance(data, str) or not data:
        raise errors.CryptoError()
    # Version 1 is CreateSecret's, whose payload may choose the CMK; later versions use the secret's key.
    named = payload.get("encryptionKeyId") if version == 1 else None
    spec, key, key_version = _sealing_key(enc, call, auth, named if isinstance(named, str) else None)
    sealed = families.encrypt(
        spec, key.reveal(), data.encode("utf-8"), secret_aad(auth.appid, secret_id, name, version), key_version
    )
    return {"ciphertext": sealed}


@handler("open_secret")
def open_secret(enc: Enclave, call: Call) -> dict[str, Any]:
    """The value of one version of the signed secret; a value that was moved, or changed, fails to open."""
    auth, payload = _signed(enc, call)
    name, secret_id, version = _place(call, payload)
    asked = payload.get("versionId")
    if asked and asked != version:  # the signed request asked for another version than the one given
        raise errors.DecryptionFailed()
    sealed = call.args.get("ciphertext")
    if not isinstance(sealed, bytes):
        raise errors.DecryptionFailed()
    spec, key, key_version = _sealing_key(enc, call, auth, None)
    if ciphertext.key_version(sealed) != key_version:
        raise errors.DecryptionFailed()
    data = families.decrypt(spec, key.reveal(), sealed, secret_aad(auth.appid, secret_id, name, version))
    try:
        return {"secretData": data.decode("utf-8")}
    except UnicodeDecodeError:
        raise errors.DecryptionFailed() from None
