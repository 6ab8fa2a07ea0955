"""The cryptographic actions: each looks up its keys, makes one core call, and returns the core's result.

They differ only in the core operation, which payload fields name keys, and which field carries a ciphertext
whose header names the key version to use; so they are one table.
"""

from __future__ import annotations

from typing import Any

from ehsm_kms.core.protocol import SignedRequest
from ehsm_kms.service.node import Node
from ehsm_kms.service.registry import Handler, Outcome, action

# action -> (core operation, payload fields naming keys, field whose ciphertext names the first key's version)
KEYED: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "Encrypt": ("encrypt", ("keyid",), None),
    "Decrypt": ("decrypt", ("keyid",), "ciphertext"),
    "GenerateDataKey": ("generate_data_key", ("keyid",), None),
    "GenerateDataKeyWithoutPlaintext": ("generate_data_key_without_plaintext", ("keyid",), None),
    "ExportDataKey": ("export_data_key", ("keyid", "ukeyid"), "olddatakey_base"),
    "AsymmetricEncrypt": ("asymmetric_encrypt", ("keyid",), None),
    "AsymmetricDecrypt": ("asymmetric_decrypt", ("keyid",), None),
    "Sign": ("sign", ("keyid",), None),
    "GetPublicKey": ("get_public_key", ("keyid",), None),
    "GenerateMac": ("generate_mac", ("keyid",), None),
}


def _keyed_handler(op: str, fields: tuple[str, ...], version_field: str | None) -> Handler:
    async def handle(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
        _, _, result = await node.keyed(op, req, fields, version_field=version_field, payload=payload)
        return Outcome(result)

    handle.__name__ = op
    return handle


for _name, (_op, _fields, _version_field) in KEYED.items():
    action(_name)(_keyed_handler(_op, _fields, _version_field))


def _verify_handler(op: str) -> Handler:
    """Verify and VerifyMac: the primary version, or (ours) the older ``keyversion`` the payload names."""

    async def handle(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
        version = payload.get("keyversion") or None
        _, _, result = await node.keyed(op, req, payload=payload, key_version=version)
        return Outcome(result)

    handle.__name__ = op
    return handle


action("Verify")(_verify_handler("verify"))
action("VerifyMac")(_verify_handler("verify_mac"))


@action("GenerateRandom")
async def generate_random(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    return Outcome(await node.call("generate_random", req, app))
