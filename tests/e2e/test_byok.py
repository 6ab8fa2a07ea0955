"""BYOK against the live server: GetParametersForImport, then ImportKeyMaterial with the returned RSA key.

The key material is wrapped here with the public key the server returned (OAEP-SHA-256 or PKCS#1 v1.5), and
the imported key is then shown to be exactly that material: an imported AES key's ciphertexts open here with
the documented format (``header ‖ nonce ‖ AES-GCM(..., aad = header ‖ aad) ‖ tag``), and an imported HMAC
key's MACs equal HMAC-SHA-256 computed here.

The import token (ours) is bound to the key and the app and is single-use. A request that fails its signature
check must not consume it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.e2e import (
    IMPORT_FAILED,
    IMPORT_TOKEN_FAILED,
    KEYID_ERROR,
    SERVER_EXCEPTION,
    SIGN_ERROR,
    App,
    b64,
    node_error,
    unb64,
)

IMPORT_KEY_MATERIAL_FAILED = node_error(500, "ImportKeyMaterial failed.")
TARGETS = {
    "EH_AES_GCM_128": 16,
    "EH_AES_GCM_192": 24,
    "EH_AES_GCM_256": 32,
    "EH_SM4_CTR": 16,
    "EH_SM4_CBC": 16,
}


def _wrap(pubkey_pem: str, material: bytes, pad: str) -> str:
    pub = serialization.load_pem_public_key(pubkey_pem.encode())
    assert isinstance(pub, rsa.RSAPublicKey)
    scheme: padding.AsymmetricPadding = (
        padding.PKCS1v15()
        if pad == "EH_RSA_PKCS1"
        else padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    return b64(pub.encrypt(material, scheme))


def _params(app: App, keyid: str, wrapping: str = "EH_RSA_2048") -> dict[str, Any]:
    out = app.call("GetParametersForImport", {"keyid": keyid, "keyspec": wrapping})
    assert out["code"] == 200 and out["message"] == "success!", out
    assert list(out["result"]) == ["pubkey", "importToken"]
    return dict(out["result"])


def _import(
    app: App, keyid: str, params: dict[str, Any], material: bytes, pad: str = "EH_RSA_PKCS1_OAEP", **kw: Any
) -> dict[str, Any]:
    token_field = kw.pop("token_field", "importToken")
    payload = {
        "keyid": keyid,
        "padding_mode": pad,
        "key_material": _wrap(params["pubkey"], material, pad),
        token_field: params["importToken"],
    }
    return app.call("ImportKeyMaterial", payload, **kw)


IMPORTED = {"code": 200, "message": "success!", "result": {"result": True}}


@pytest.mark.parametrize(
    ("spec", "pad"),
    [
        ("EH_AES_GCM_128", "EH_RSA_PKCS1_OAEP"),
        ("EH_AES_GCM_192", "EH_RSA_PKCS1"),
        ("EH_AES_GCM_256", "EH_RSA_PKCS1_OAEP"),
        ("EH_AES_GCM_256", "EH_RSA_PKCS1"),
        ("EH_SM4_CTR", "EH_RSA_PKCS1"),
        ("EH_SM4_CBC", "EH_RSA_PKCS1_OAEP"),
    ],
)
def test_import_symmetric_key(app: App, spec: str, pad: str) -> None:
    keyid = app.create_key(spec, origin="EXTERNAL")
    # Not imported yet: the key cannot encrypt.
    assert app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"x")}) == SERVER_EXCEPTION
    params = _params(app, keyid)
    assert params["pubkey"].startswith("-----BEGIN RSA PUBLIC KEY-----\n")
    assert params["pubkey"].endswith("-----END RSA PUBLIC KEY-----\n")
    material = os.urandom(TARGETS[spec])
    assert _import(app, keyid, params, material, pad) == IMPORTED

    aad = b64(b"byok")
    ct = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"imported"), "aad": aad})["ciphertext"]
    assert app.ok("Decrypt", {"keyid": keyid, "ciphertext": ct, "aad": aad}) == {"plaintext": b64(b"imported")}
    if spec.startswith("EH_AES"):
        data = unb64(ct)
        header, nonce, sealed = data[:5], data[5:17], data[17:]
        assert header == struct.pack(">BI", 0x01, 1)
        assert AESGCM(material).decrypt(nonce, sealed, header + b"byok") == b"imported"
        mine = header + nonce + AESGCM(material).encrypt(nonce, b"made here", header + b"byok")
        assert app.ok("Decrypt", {"keyid": keyid, "ciphertext": b64(mine), "aad": aad}) == {
            "plaintext": b64(b"made here")
        }
    # Imported keys do not make or export data keys (origin EXTERNAL, contract 4.2).
    assert app.call("GenerateDataKey", {"keyid": keyid, "keylen": 16}) == SERVER_EXCEPTION
    assert app.call("GenerateDataKeyWithoutPlaintext", {"keyid": keyid, "keylen": 16}) == SERVER_EXCEPTION
    ukey = app.create_key("EH_SM2")
    export = {"keyid": keyid, "ukeyid": ukey, "olddatakey_base": ct, "aad": aad}
    assert app.call("ExportDataKey", export) == SERVER_EXCEPTION
    # The token is single-use, and imported material is never replaced.
    assert _import(app, keyid, params, material, pad) == IMPORT_TOKEN_FAILED
    assert app.call("GetParametersForImport", {"keyid": keyid, "keyspec": "EH_RSA_2048"}) == SERVER_EXCEPTION


@pytest.mark.parametrize("wrapping", ["EH_RSA_3072", "EH_RSA_4096"])
def test_larger_wrapping_keys(app: App, wrapping: str) -> None:
    keyid = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    params = _params(app, keyid, wrapping)
    pub = serialization.load_pem_public_key(params["pubkey"].encode())
    assert isinstance(pub, rsa.RSAPublicKey) and pub.key_size == int(wrapping[-4:])
    assert _import(app, keyid, params, os.urandom(32)) == IMPORTED
    assert app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"x")})["code"] == 200


@pytest.mark.parametrize("size", [16, 32, 64])
def test_import_hmac_key(app: App, size: int) -> None:
    keyid = app.create_key("EH_HMAC", usage="SIGN_VERIFY", origin="EXTERNAL")
    material = os.urandom(size)
    assert _import(app, keyid, _params(app, keyid), material) == IMPORTED
    mac = app.ok("GenerateMac", {"keyid": keyid, "message": b64(b"mac me")})["mac"]
    assert unb64(mac) == hmac.new(material, b"mac me", hashlib.sha256).digest()


def test_import_token_spelled_as_in_the_docs(app: App) -> None:
    """The docs call the field ``ImportToken`` (contract 3.4); both spellings import."""
    keyid = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    assert _import(app, keyid, _params(app, keyid), os.urandom(32), token_field="ImportToken") == IMPORTED
    assert app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"x")})["code"] == 200


def test_token_of_another_key_fails_and_burns_nothing(app: App) -> None:
    a = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    b = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    pa, pb = _params(app, a), _params(app, b)
    # b's token (and b's wrapping key) offered for a.
    assert _import(app, a, pb, os.urandom(32)) == IMPORT_TOKEN_FAILED
    assert _import(app, a, {"pubkey": pa["pubkey"], "importToken": pb["importToken"]}, os.urandom(32)) == (
        IMPORT_TOKEN_FAILED
    )
    assert _import(app, b, pb, os.urandom(32)) == IMPORTED
    assert _import(app, a, pa, os.urandom(32)) == IMPORTED


def test_token_of_another_app_fails(app: App, other_app: App) -> None:
    mine = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    theirs = other_app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    params = _params(app, mine)
    # The other app cannot use my key, nor my token for its own key.
    assert _import(other_app, mine, params, os.urandom(32)) == KEYID_ERROR
    assert _import(other_app, theirs, params, os.urandom(32)) == IMPORT_TOKEN_FAILED
    assert other_app.call("GetParametersForImport", {"keyid": mine, "keyspec": "EH_RSA_2048"}) == KEYID_ERROR
    assert _import(app, mine, params, os.urandom(32)) == IMPORTED


def test_bad_signature_does_not_burn_the_token(app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    params = _params(app, keyid)
    assert _import(app, keyid, params, os.urandom(32), apikey="W" * 32) == SIGN_ERROR
    assert _import(app, keyid, params, os.urandom(32)) == IMPORTED


def test_only_the_newest_token_is_good(app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    first, second = _params(app, keyid), _params(app, keyid)
    assert first["importToken"] != second["importToken"]
    assert _import(app, keyid, first, os.urandom(32)) == IMPORT_TOKEN_FAILED
    assert _import(app, keyid, second, os.urandom(32)) == IMPORTED


def test_failed_unwrap_is_import_key_failed(app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    # Material of the wrong size for the key spec.
    assert _import(app, keyid, _params(app, keyid), os.urandom(24)) == IMPORT_FAILED
    # Wrapped with PKCS#1 v1.5, declared OAEP.
    params = _params(app, keyid)
    payload = {
        "keyid": keyid,
        "padding_mode": "EH_RSA_PKCS1_OAEP",
        "key_material": _wrap(params["pubkey"], os.urandom(32), "EH_RSA_PKCS1"),
        "importToken": params["importToken"],
    }
    assert app.call("ImportKeyMaterial", payload) == IMPORT_FAILED
    # Parameters can be asked for again after a failure, and the import then works.
    assert _import(app, keyid, _params(app, keyid), os.urandom(32)) == IMPORTED


def test_garbled_or_missing_token(app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    params = _params(app, keyid)
    for token in ("garbled", b64(b'{"keyid":"x"}'), None):
        sent = {**params, "importToken": token}
        assert _import(app, keyid, sent, os.urandom(32)) == IMPORT_KEY_MATERIAL_FAILED, token
    assert _import(app, keyid, params, os.urandom(32)) == IMPORTED


def test_parameters_for_import_refusals(app: App) -> None:
    internal = app.create_key("EH_AES_GCM_256")
    assert app.call("GetParametersForImport", {"keyid": internal, "keyspec": "EH_RSA_2048"}) == SERVER_EXCEPTION
    external = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    for wrapping in ("EH_SM2", "EH_AES_GCM_256", "EH_EC_P256"):
        out = app.call("GetParametersForImport", {"keyid": external, "keyspec": wrapping})
        assert out == SERVER_EXCEPTION, wrapping
