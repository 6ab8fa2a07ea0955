"""Result shapes that existing clients depend on (contract 9.1, "Required result fields per serializer"), and
the raw JSON text: compact like ``JSON.stringify``, envelope keys ``code, message, result``, and results the
original's enclave built with their keys in alphabetical order.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.e2e import App, b64
from tests.e2e.conftest import Keyring, Kms

B64 = r'"[A-Za-z0-9+/]+={0,2}"'


def _envelope(result: str, message: str = "success!") -> re.Pattern[str]:
    return re.compile(r'\{"code":200,"message":"' + re.escape(message) + r'","result":' + result + r"\}")


def _types(out: dict[str, Any], **expected: type) -> None:
    for name, kind in expected.items():
        assert name in out, (name, out)
        assert type(out[name]) is kind, (name, out[name])


def test_required_fields_per_serializer(kms: Kms, keyring: Keyring, app: App) -> None:
    """Each action's result has the fields the official Python SDK builds its response object from."""
    ring = keyring.app
    enrolled = kms.wire.get("Enroll")["result"]
    _types(enrolled, appid=str, apikey=str)
    _types(kms.wire.get("GetVersion")["result"], version=str, git_sha=str)
    _types(app.ok("CreateKey", {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY",
                                "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}), keyid=str)  # fmt: skip
    enc = ring.ok("Encrypt", {"keyid": keyring["aes256"], "plaintext": b64(b"p")})
    _types(enc, ciphertext=str)
    _types(ring.ok("Decrypt", {"keyid": keyring["aes256"], "ciphertext": enc["ciphertext"]}), plaintext=str)
    asym = {"keyid": keyring["rsa2048"], "padding_mode": "EH_RSA_PKCS1_OAEP"}
    aenc = ring.ok("AsymmetricEncrypt", {**asym, "plaintext": b64(b"p")})
    _types(aenc, ciphertext=str)
    _types(ring.ok("AsymmetricDecrypt", {**asym, "ciphertext": aenc["ciphertext"]}), plaintext=str)
    sign = {"keyid": keyring["p256"], "message": b64(b"m"), "message_type": "EH_RAW", "digest_mode": "EH_SHA_256",
            "padding_mode": "EH_PAD_NONE"}  # fmt: skip
    sig = ring.ok("Sign", sign)
    _types(sig, signature=str)
    _types(ring.ok("Verify", {**sign, **sig}), result=bool)
    dk = ring.ok("GenerateDataKey", {"keyid": keyring["aes256"], "keylen": 32})
    _types(dk, plaintext=str, ciphertext=str)
    _types(ring.ok("GenerateDataKeyWithoutPlaintext", {"keyid": keyring["aes256"], "keylen": 32}), ciphertext=str)
    export = {"keyid": keyring["aes256"], "ukeyid": keyring["rsa2048"], "olddatakey_base": dk["ciphertext"]}
    _types(ring.ok("ExportDataKey", export), newdatakey=str)
    _types(ring.ok("GetPublicKey", {"keyid": keyring["rsa2048"]}), pubkey=str)
    external = app.create_key("EH_AES_GCM_128", origin="EXTERNAL")
    params = app.ok("GetParametersForImport", {"keyid": external, "keyspec": "EH_RSA_2048"})
    _types(params, pubkey=str, importToken=str)
    pub = serialization.load_pem_public_key(params["pubkey"].encode())
    assert isinstance(pub, rsa.RSAPublicKey)
    wrapped = pub.encrypt(os.urandom(16), padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    material = {"key_material": b64(wrapped), "importToken": params["importToken"]}
    imported = app.ok("ImportKeyMaterial", {"keyid": external, "padding_mode": "EH_RSA_PKCS1_OAEP", **material})
    _types(imported, result=bool)
    listing = app.ok("ListKey")
    assert type(listing["list"]) is list and len(listing["list"]) == 2
    for entry in listing["list"]:
        _types(entry, keyid=str, alias=str, keyspec=str, keyState=int, creationDate=int, expireTime=int)


@pytest.mark.parametrize(
    ("action", "name", "extra", "result"),
    [
        ("Encrypt", "aes256", {"plaintext": b64(b"p")}, r"\{" + '"ciphertext":' + B64 + r"\}"),
        ("GenerateDataKey", "aes256", {"keylen": 16}, r"\{" + '"ciphertext":' + B64 + ',"plaintext":' + B64 + r"\}"),
        ("GenerateDataKeyWithoutPlaintext", "sm4cbc", {"keylen": 16}, r"\{" + '"ciphertext":' + B64 + r"\}"),
        ("Sign", "p384", {"message": b64(b"m"), "message_type": "EH_RAW", "digest_mode": "EH_SHA_384",
                          "padding_mode": "EH_PAD_NONE"}, r"\{" + '"signature":' + B64 + r"\}"),
        ("GenerateMac", "hmac", {"message": b64(b"m")}, r"\{" + '"mac":' + B64 + r"\}"),
        ("AsymmetricEncrypt", "sm2", {"plaintext": b64(b"p"), "padding_mode": "EH_PAD_NONE"},
         r"\{" + '"ciphertext":' + B64 + r"\}"),
    ],
    ids=lambda v: v if isinstance(v, str) and v[0].isupper() else "",
)  # fmt: skip
def test_raw_text_of_enclave_results(
    keyring: Keyring, action: str, name: str, extra: dict[str, Any], result: str
) -> None:
    raw = keyring.app.raw(action, {"keyid": keyring[name], **extra})
    assert _envelope(result).fullmatch(raw), raw


def test_raw_text_of_verify_and_decrypt(keyring: Keyring) -> None:
    app = keyring.app
    sign = {"keyid": keyring["p256"], "message": b64(b"m"), "message_type": "EH_RAW", "digest_mode": "EH_SHA_256",
            "padding_mode": "EH_PAD_NONE"}  # fmt: skip
    sig = app.ok("Sign", sign)
    assert app.raw("Verify", {**sign, **sig}) == '{"code":200,"message":"success!","result":{"result":true}}'
    assert app.raw("Verify", {**sign, "signature": b64(b"\x30\x00")}) == (
        '{"code":200,"message":"success!","result":{"result":false}}'
    )
    ct = app.ok("Encrypt", {"keyid": keyring["aes128"], "plaintext": b64(b"abc")})["ciphertext"]
    assert app.raw("Decrypt", {"keyid": keyring["aes128"], "ciphertext": ct}) == (
        '{"code":200,"message":"success!","result":{"plaintext":"' + b64(b"abc") + '"}}'
    )


def test_raw_text_of_node_results(app: App) -> None:
    """Node-built results keep their own order; key management says "successful"."""
    keyid = app.create_key("EH_SM4_CTR")
    assert app.raw("DisableKey", {"keyid": keyid}) == '{"code":200,"message":"successful","result":{}}'
    raw = app.raw("ListKey")
    assert re.fullmatch(
        r'\{"code":200,"message":"successful","result":\{"list":\[\{"keyid":"' + keyid
        + r'","creationDate":\d{13},"expireTime":\d{13},"alias":"","keyspec":"EH_SM4_CTR","keyState":0\}\]\}\}',
        raw,
    ), raw  # fmt: skip
    assert app.raw("DeleteKey", {"keyid": keyid}) == '{"code":200,"message":"successful","result":{}}'


def test_raw_text_of_errors(app: App) -> None:
    assert app.raw("Encrypt", {"keyid": "x"}) == (
        '{"code":400,"message":"Parameter invalid, The keyid length error.","result":{}}'
    )
    keyid = app.create_key("EH_AES_GCM_256")
    assert app.raw("Sign", {"keyid": keyid, "message": b64(b"m"), "message_type": "EH_RAW",
                            "digest_mode": "EH_SHA_256", "padding_mode": "EH_PAD_NONE"}) == (
        '{"code":500,"message":"Server exception.","result":null}'
    )  # fmt: skip
