"""Core operations for app administration: the admin credential and APIKey rotation.

The admin credential is an id and a 32-character secret made here at the node's first start; the secret leaves the
core once (to be shown to the operator) and is stored only as a blob bound to the purpose ``admin`` and the id,
which only the core can open. An admin request is signed exactly like an app's (the admin id in ``appid``, the
secret as the APIKey), and the core checks that signature in constant time before it does anything for it.

An app's new APIKey is made here too, sealed to the app like the one Enroll made; the old blob stays valid only
as long as a store row holds it, so replacing the row retires the old APIKey.
"""

from __future__ import annotations

import secrets
import uuid
from typing import TYPE_CHECKING, Any

from ehsm_kms import errors
from ehsm_kms.core import keyblob
from ehsm_kms.core.ops_keys import APIKEY_ALPHABET, APIKEY_LENGTH
from ehsm_kms.core.registry import handler
from ehsm_kms.core.specs import KeySpec, KeyUsage, Origin
from ehsm_kms.wire import sign as wire_sign

if TYPE_CHECKING:
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.protocol import Call

ADMIN_PREFIX = "admin-"


def admin_binding(admin_id: str) -> keyblob.Binding:
    return keyblob.Binding(
        purpose="admin",
        keyid=admin_id,
        appid=admin_id,
        keyspec=int(KeySpec.EH_HMAC),
        usage=int(KeyUsage.EH_KEYUSAGE_SIGN_VERIFY),
        origin=int(Origin.EH_INTERNAL_KEY),
        key_version=1,
    )


def _new_secret() -> str:
    return "".join(secrets.choice(APIKEY_ALPHABET) for _ in range(APIKEY_LENGTH))


def authenticate_admin(enc: Enclave, call: Call) -> dict[str, Any]:
    """The signed payload of an admin request, once its signature is checked against the admin credential."""
    auth, cred = call.auth, call.app
    if auth is None or cred is None or cred.appid != auth.appid or not cred.appid.startswith(ADMIN_PREFIX):
        raise errors.AdminAuthError()
    try:
        key = keyblob.unwrap(enc.ring, admin_binding(cred.appid), cred.apikey_blob)
    except errors.EhsmError:
        raise errors.AdminAuthError() from None
    message = wire_sign.sign_string(auth.appid, auth.timestamp, auth.payload, auth.nonce)
    if not wire_sign.signature_matches(wire_sign.signature(key.reveal(), message), auth.sign):
        raise errors.AdminAuthError()
    return auth.payload if isinstance(auth.payload, dict) else {}


@handler("create_admin")
def create_admin(enc: Enclave, call: Call) -> dict[str, Any]:
    admin_id = ADMIN_PREFIX + str(uuid.uuid4())
    secret = _new_secret()
    blob = keyblob.wrap(enc.ring, admin_binding(admin_id), secret.encode("ascii"))
    return {"admin_id": admin_id, "admin_key": secret, "blob": blob}


@handler("admin_verify")
def admin_verify(enc: Enclave, call: Call) -> dict[str, Any]:
    authenticate_admin(enc, call)
    return {}


@handler("admin_new_apikey")
def admin_new_apikey(enc: Enclave, call: Call) -> dict[str, Any]:
    """A new APIKey for the app the admin's signed payload names (``args["appid"]`` must be that app)."""
    from ehsm_kms.core.enclave import apikey_binding

    payload = authenticate_admin(enc, call)
    appid = call.args.get("appid")
    if not isinstance(appid, str) or payload.get("appid") != appid:
        raise errors.AdminAuthError()
    apikey = _new_secret()
    return {"apikey": apikey, "apikey_blob": keyblob.wrap(enc.ring, apikey_binding(appid), apikey.encode("ascii"))}
