"""The cryptographic actions: each looks up its keys, makes one core call, and returns the core's result."""

from __future__ import annotations

from typing import Any

from ehsm_kms.core.protocol import SignedRequest
from ehsm_kms.service.node import Node
from ehsm_kms.service.registry import Outcome, action


@action("Encrypt")
async def encrypt(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("encrypt", req, payload=payload)
    return Outcome(result)


@action("Decrypt")
async def decrypt(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("decrypt", req, version_field="ciphertext", payload=payload)
    return Outcome(result)


@action("GenerateDataKey")
async def generate_data_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("generate_data_key", req, payload=payload)
    return Outcome(result)


@action("GenerateDataKeyWithoutPlaintext")
async def generate_data_key_without_plaintext(
    node: Node, req: SignedRequest, payload: dict[str, Any]
) -> Outcome:
    _, _, result = await node.keyed("generate_data_key_without_plaintext", req, payload=payload)
    return Outcome(result)


@action("ExportDataKey")
async def export_data_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed(
        "export_data_key", req, ("keyid", "ukeyid"), version_field="olddatakey_base", payload=payload
    )
    return Outcome(result)


@action("AsymmetricEncrypt")
async def asymmetric_encrypt(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("asymmetric_encrypt", req, payload=payload)
    return Outcome(result)


@action("AsymmetricDecrypt")
async def asymmetric_decrypt(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("asymmetric_decrypt", req, payload=payload)
    return Outcome(result)


@action("Sign")
async def sign(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("sign", req, payload=payload)
    return Outcome(result)


@action("Verify")
async def verify(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("verify", req, payload=payload)
    return Outcome(result)


@action("GetPublicKey")
async def get_public_key(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("get_public_key", req, payload=payload)
    return Outcome(result)


@action("GenerateRandom")
async def generate_random(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    return Outcome(await node.call("generate_random", req, app))


@action("GenerateMac")
async def generate_mac(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("generate_mac", req, payload=payload)
    return Outcome(result)


@action("VerifyMac")
async def verify_mac(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    _, _, result = await node.keyed("verify_mac", req, payload=payload)
    return Outcome(result)
