"""Aliases and descriptions: CreateAlias, UpdateAlias, DeleteAlias, ListAliases, DescribeKey, UpdateKeyDescription.

A key has at most one alias (the ``alias`` field ListKey always had), unique within its app: the database's
unique index decides between two requests that race for one name. Every action that takes a ``keyid`` also
accepts ``alias/<name>`` (resolved in :meth:`Node.key`); the ``alias`` field of these actions may be given with or
without that prefix, and results show the bare name.
"""

from __future__ import annotations

from typing import Any

from ehsm_kms import errors
from ehsm_kms.core.protocol import ALIAS_PREFIX, SignedRequest
from ehsm_kms.service.node import Node
from ehsm_kms.service.registry import Outcome, action
from ehsm_kms.service.versions import DAY_MS, managed


def alias_name(value: Any) -> str:
    """The bare alias (the wire rule admitted a name, optionally prefixed with ``alias/``)."""
    text = str(value)
    return text[len(ALIAS_PREFIX) :] if text.startswith(ALIAS_PREFIX) else text


@action("CreateAlias")
async def create_alias(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app, key = await managed(node, req, payload)
    name = alias_name(payload["alias"])
    await node.store.set_alias(app.appid, key.record.keyid, name)
    node.forget_key(key.record.keyid)
    node.forget_alias(app.appid, name)
    return Outcome({"alias": name, "keyid": key.record.keyid})


@action("UpdateAlias")
async def update_alias(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app, key = await managed(node, req, payload)
    name = alias_name(payload["alias"])
    previous = await node.store.get_key_by_alias(app.appid, name)
    await node.store.move_alias(app.appid, name, key.record.keyid)
    for keyid in (previous, key.record.keyid):
        if keyid:
            node.forget_key(keyid)
    node.forget_alias(app.appid, name)
    return Outcome({"alias": name, "keyid": key.record.keyid})


@action("DeleteAlias")
async def delete_alias(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    await node.verify(req, app)
    name = alias_name(payload["alias"])
    previous = await node.store.get_key_by_alias(app.appid, name)
    if not await node.store.clear_alias(app.appid, name):
        raise errors.AliasNotFound()
    if previous:
        node.forget_key(previous)
    node.forget_alias(app.appid, name)
    return Outcome({"alias": name})


@action("ListAliases")
async def list_aliases(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    await node.verify(req, app)
    pairs = await node.store.list_aliases(app.appid)
    return Outcome({"list": [{"alias": alias, "keyid": keyid} for alias, keyid in pairs]})


@action("UpdateKeyDescription")
async def update_key_description(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app, key = await managed(node, req, payload)
    description = str(payload.get("description") or "")
    if not await node.store.set_description(app.appid, key.record.keyid, description):
        raise errors.KeyNotFound()
    node.forget_key(key.record.keyid)
    return Outcome({"keyid": key.record.keyid, "description": description})


@action("DescribeKey")
async def describe_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, key = await managed(node, req, payload)
    rec = key.record
    versions = await node.store.list_key_versions(rec.keyid)
    result = {
        "keyid": rec.keyid,
        "alias": rec.alias,
        "description": rec.description,
        "keyspec": rec.keyspec,
        "keyusage": rec.usage,
        "origin": rec.origin,
        "keyState": rec.state,
        "creationDate": rec.creation_ms,
        "expireTime": rec.expire_ms,
        "primaryVersion": rec.primary_version,
        "minDecryptVersion": rec.min_decrypt_version,
        "versions": [v.version for v in versions],
        "rotationPeriod": rec.rotation_period_ms // DAY_MS,
        "nextRotationDate": rec.next_rotation_ms,
        "deletionDate": rec.deletion_due_ms,
    }
    return Outcome(result)
