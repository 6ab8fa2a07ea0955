"""Key management actions: CreateKey, ListKey, Enable/Disable/Delete, and BYOK import.

Nothing here deletes a key behind the user's back (DESIGN invariant 8): no expiry sweep, no token sweep. A key past
its ``expireTime`` is refused ("keyid expire"), never erased.
"""

from __future__ import annotations

import uuid
from typing import Any

from ehsm_kms import errors
from ehsm_kms.core.protocol import Call, SignedRequest
from ehsm_kms.core.specs import LIMITS
from ehsm_kms.core.tokens import parse_import_token
from ehsm_kms.service.node import Node
from ehsm_kms.service.registry import Outcome, action
from ehsm_kms.storage.records import ImportRecord, KeyRecord, KeyVersionRecord


@action("CreateKey")
async def create_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    keyid = str(uuid.uuid4())
    made = await node.call("create_key", req, app, args={"keyid": keyid, "version": 1}, record=False)
    now = node.clock_ms()
    record = KeyRecord(
        keyid=keyid,
        appid=app.appid,
        keyspec=made["keyspec"],
        usage=made["usage"],
        origin=made["origin"],
        state=1,
        creation_ms=now,
        expire_ms=now + LIMITS.cmk_lifetime_ms,
    )
    version = KeyVersionRecord(keyid=keyid, version=1, blob=made["blob"], created_ms=now)
    await node.store.create_key(record, version, replay=node.replay_entry(req))
    return Outcome({"keyid": keyid})


@action("ListKey")
async def list_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    await node.verify(req, app)
    keys = await node.store.list_keys(app.appid)
    listing = [
        {
            "keyid": k.keyid,
            "creationDate": k.creation_ms,
            "expireTime": k.expire_ms,
            "alias": k.alias,
            "keyspec": k.keyspec,
            "keyState": k.state,
        }
        for k in keys
    ]
    return Outcome({"list": listing})


@action("DeleteKey")
async def delete_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    await node.verify(req, app)
    keyid = await node.named_keyid(app, payload.get("keyid"))
    if isinstance(keyid, str):
        await node.store.delete_key(app.appid, keyid)  # unknown key: still "successful", as the original
        node.forget_key(keyid)
    return Outcome()


@action("DeleteAllKey")
async def delete_all_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    await node.verify(req, app)
    for key in await node.store.list_keys(app.appid):
        node.forget_key(key.keyid)
    await node.store.delete_all_keys(app.appid)
    return Outcome()


async def _set_state(node: Node, req: SignedRequest, payload: dict[str, Any], state: int) -> Outcome:
    app = await node.app(req.appid)
    await node.verify(req, app)
    keyid = await node.named_keyid(app, payload.get("keyid"))
    if not isinstance(keyid, str) or not await node.store.set_key_state(app.appid, keyid, state):
        raise errors.KeyStateError()
    node.forget_key(keyid)
    return Outcome()


@action("EnableKey")
async def enable_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    return await _set_state(node, req, payload, 1)


@action("DisableKey")
async def disable_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    return await _set_state(node, req, payload, 0)


@action("GetParametersForImport")
async def get_parameters_for_import(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, keys, made = await node.keyed("get_parameters_for_import", req, payload=payload)
    await node.store.put_import(
        ImportRecord(
            keyid=keys[0].record.keyid,
            token_id=made["token_id"],
            wrapping_blob=made["wrapping_blob"],
            wrapping_spec=made["wrapping_spec"],
            expires_ms=made["expires_ms"],
        )
    )
    return Outcome({"pubkey": made["pubkey"], "importToken": made["importToken"]})


@action("ImportKeyMaterial")
async def import_key_material(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    # The signature is checked before the single-use token is taken, so nobody can burn another app's token.
    await node.verify(req, app)
    key = await node.key(app, payload.get("keyid"))
    try:
        token = parse_import_token(payload.get("importToken"))
    except errors.ImportTokenError:
        raise errors.ImportKeyMaterialFailed() from None
    if node.clock_ms() > token["expires"]:
        raise errors.ImportTokenExpired()
    if not token["token_id"].isascii():  # ours are hex; any other cannot match (and may not even encode)
        raise errors.ImportTokenError()
    pending = await node.store.take_import(key.record.keyid, token["token_id"], node.clock_ms())
    if pending is None:
        raise errors.ImportTokenError()
    args = {
        "wrapping_blob": pending.wrapping_blob,
        "wrapping_spec": pending.wrapping_spec,
        "token_id": pending.token_id,
        "expires_ms": pending.expires_ms,
    }
    # Not node.call: the replay record was written by node.verify above, and node.call would write it again on
    # a core error, turning every import failure into "Timestamp can't be repeated in 20 minutes".
    made = await node.core.call(
        Call(op="import_key_material", auth=req, app=node.credential(app), keys=[key.ref()], args=args)
    )
    await node.store.update_key_version_blob(key.record.keyid, key.version.version, made["blob"])
    node.forget_key(key.record.keyid)
    return Outcome({"result": True})
