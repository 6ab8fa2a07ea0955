"""App administration: the admin credential, and listing, showing, revoking, restoring and re-keying apps.

The admin credential (an id ``admin-<uuid>`` and a 32-character secret) is made by the core at the first start
of a node on an empty store and written to the terminal once (standard error, never the log); the store keeps
only the blob the core sealed (:mod:`ehsm_kms.core.ops_admin`). Admin requests are signed like any app's, with
the admin id as ``appid`` and the secret as the APIKey; the core checks the signature. The same operations run on
the node itself (``ehsm-kms admin ...``): those that need the core (APIKey rotation) ask for the admin secret
and sign their request locally, the others act on the store directly, which the node's operator holds anyway.

A revoked app's requests are all refused (``app revoked``) and its keys are kept; an app's new APIKey replaces
the old one at once on the node that made it and within ``key_cache_ttl_ms`` on the others.
"""

from __future__ import annotations

import secrets
import sys
from typing import Any, Final, TextIO

from ehsm_kms import errors
from ehsm_kms.core.protocol import AppCredential, Call, SignedRequest
from ehsm_kms.service.apps import ENROLL_TOKEN_TTL_MS, issue_enroll_token
from ehsm_kms.service.audit import note_subject
from ehsm_kms.service.node import Node
from ehsm_kms.service.registry import Outcome, action
from ehsm_kms.storage.base import Store
from ehsm_kms.storage.keyadmin_base import AdminCredential
from ehsm_kms.storage.records import APP_ACTIVE, APP_REVOKED, AppRecord
from ehsm_kms.wire import sign as wire_sign

HOUR_MS: Final = 3_600_000


def banner(admin_id: str, admin_key: str) -> str:
    return (
        "\n"
        "================ ehsm-kms admin credential (shown once; keep it safe) ================\n"
        f"  admin id:  {admin_id}\n"
        f"  admin key: {admin_key}\n"
        "  Admin actions (AdminListApps, AdminRotateApiKey, ...) are signed with these like an app's requests.\n"
        "  Lost it? On the node: ehsm-kms admin reset-admin-credential\n"
        "======================================================================================\n"
    )


async def ensure_admin_credential(node: Node, out: TextIO | None = None) -> bool:
    """At start: make the admin credential if the store has none and show it once; True when it was made here."""
    if await node.store.get_admin_credential() is not None:
        return False
    made = await node.core.call(Call(op="create_admin"))
    cred = AdminCredential(made["admin_id"], made["blob"], node.clock_ms())
    if not await node.store.put_admin_credential(cred):
        return False  # another node made one at the same moment; that one is shown there
    stream = out or sys.stderr
    stream.write(banner(made["admin_id"], made["admin_key"]))
    stream.flush()
    return True


async def reset_admin_credential(node: Node) -> tuple[str, str]:
    """A new admin credential replacing the old one (which stops working): (admin id, admin key)."""
    made = await node.core.call(Call(op="create_admin"))
    cred = AdminCredential(made["admin_id"], made["blob"], node.clock_ms())
    await node.store.put_admin_credential(cred, replace=True)
    return made["admin_id"], made["admin_key"]


def signed_admin_request(admin_id: str, admin_key: str, payload: dict[str, Any], now_ms: int) -> SignedRequest:
    """An admin request signed on the node by the ``ehsm-kms admin`` command (the key stays in its memory)."""
    timestamp, nonce = str(now_ms), secrets.token_hex(8)
    sign = wire_sign.sign_request(admin_key, admin_id, timestamp, payload, nonce)
    return SignedRequest(appid=admin_id, timestamp=timestamp, sign=sign, payload=payload, nonce=nonce)


async def _credential(node: Node, req: SignedRequest) -> AppCredential:
    cred = await node.store.get_admin_credential()
    if cred is None or req.appid != cred.admin_id:
        raise errors.AdminAuthError()
    return AppCredential(cred.admin_id, cred.blob)


async def authenticate(node: Node, req: SignedRequest) -> AppCredential:
    """Check an admin request's signature in the core, then write its replay record."""
    cred = await _credential(node, req)
    await node.core.call(Call(op="admin_verify", auth=req, app=cred))
    await node.record_replay(req)
    return cred


def app_info(app: AppRecord, keys: int | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"appid": app.appid, "state": app.state, "createdDate": app.created_ms}
    if keys is not None:
        info["keys"] = keys
    return info


async def list_apps(store: Store) -> list[dict[str, Any]]:
    return [app_info(app) for app in await store.list_apps()]


async def show_app(store: Store, appid: str) -> dict[str, Any]:
    app = await store.get_app(appid)
    if app is None:
        raise errors.AppNotFound()
    return app_info(app, len(await store.list_keys(appid)))


async def set_app_state(store: Store, appid: str, state: str) -> dict[str, Any]:
    if not await store.update_app(appid, state=state):
        raise errors.AppNotFound()
    return await show_app(store, appid)


async def rotate_apikey(node: Node, req: SignedRequest, cred: AppCredential, appid: str) -> str:
    """The app's new APIKey (made and sealed by the core for this admin request); the old one stops working."""
    if await node.store.get_app(appid) is None:
        raise errors.AppNotFound()
    made = await node.core.call(Call(op="admin_new_apikey", auth=req, app=cred, args={"appid": appid}))
    if not await node.store.update_app(appid, apikey_blob=made["apikey_blob"]):
        raise errors.AppNotFound()
    node.forget_app(appid)
    apikey: str = made["apikey"]
    return apikey


# ---------------------------------------------------------------- the admin actions
@action("AdminListApps")
async def admin_list_apps(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    await authenticate(node, req)
    return Outcome({"list": await list_apps(node.store)})


@action("AdminShowApp")
async def admin_show_app(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    await authenticate(node, req)
    note_subject(payload["appid"])
    return Outcome(await show_app(node.store, payload["appid"]))


@action("AdminRotateApiKey")
async def admin_rotate_apikey(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    cred = await authenticate(node, req)
    note_subject(payload["appid"])
    apikey = await rotate_apikey(node, req, cred, payload["appid"])
    return Outcome({"appid": payload["appid"], "apikey": apikey})


@action("AdminRevokeApp")
async def admin_revoke_app(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    await authenticate(node, req)
    note_subject(payload["appid"])
    info = await set_app_state(node.store, payload["appid"], APP_REVOKED)
    node.forget_app(payload["appid"])
    return Outcome(info)


@action("AdminRestoreApp")
async def admin_restore_app(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    await authenticate(node, req)
    note_subject(payload["appid"])
    info = await set_app_state(node.store, payload["appid"], APP_ACTIVE)
    node.forget_app(payload["appid"])
    return Outcome(info)


@action("AdminIssueEnrollToken")
async def admin_issue_enroll_token(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    await authenticate(node, req)
    hours = payload.get("ttlHours")
    ttl = int(hours) * HOUR_MS if hours else ENROLL_TOKEN_TTL_MS
    token = await issue_enroll_token(node.store, node.clock_ms(), ttl)
    return Outcome({"token": token, "expireTime": node.clock_ms() + ttl})
