"""An eHSM-style client, written from the wire contract's section 9.1, works against the server.

:class:`EhsmStyleClient` re-implements what existing users run: the official Python SDK's ``prepare_params``
(contract section 2.3: an ``OrderedDict`` of appid and timestamp, the payload rendered with ``urlencode`` +
``unquote_plus``, no nonce, HMAC-SHA256 with the APIKey, plain base64) and its calls (``POST`` to ``base_url``
with ``params={"Action": ...}``, ``base_url`` ending in ``/ehsm``, ``raise_for_status``, then ``code``). It does
not use ``ehsm_kms``: the server must not be tested only with our own SDK.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus, urlencode

import httpx
import pytest

from tests.client.harness import require_secret_actions
from tests.live import LiveServer


class InvalidParamException(Exception):
    """The original SDK's one error: "Response has status <code>: <message>"."""

    def __init__(self, code: int, message: str | None) -> None:
        super().__init__(f"Response has status {code}: {message}")
        self.code, self.message = code, message


class EhsmStyleClient:
    def __init__(self, base_url: str, *, appid: str = "", apikey: str = "", allow_insecure: bool = False) -> None:
        self.appid, self.apikey = appid, apikey
        self.session = httpx.Client(base_url=base_url, verify=not allow_insecure, timeout=None)

    def close(self) -> None:
        self.session.close()

    # ehsm/utils.py::prepare_params
    def prepare_params(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        timestamp = str(int(time.time() * 1000))
        params: OrderedDict[str, Any] = OrderedDict(appid=self.appid, timestamp=timestamp)
        if payload is not None:
            params["payload"] = unquote_plus(urlencode(sorted((k, v) for k, v in payload.items() if v is not None)))
        text = unquote_plus(urlencode(sorted((k, v) for k, v in params.items() if v is not None)))
        sign = base64.b64encode(hmac.new(self.apikey.encode(), text.encode(), hashlib.sha256).digest()).decode()
        return {**params, "sign": sign, "payload": payload}

    def _result(self, response: httpx.Response) -> dict[str, Any]:
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        if data["code"] != 200:
            raise InvalidParamException(data["code"], data.get("message"))
        result: dict[str, Any] = data["result"]
        return result

    def _post(self, action: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = {k: v for k, v in payload.items() if v is not None} if payload is not None else None
        return self._result(self.session.post("", params={"Action": action}, json=self.prepare_params(payload)))

    # -------------------------------------------------------------- the SDK's methods (contract section 9.1)
    def get_version(self) -> dict[str, Any]:
        return self._result(self.session.get("", params={"Action": "GetVersion"}))

    def enroll(self) -> tuple[str, str]:
        result = self._result(self.session.get("/", params={"Action": "Enroll"}))
        self.appid, self.apikey = result["appid"], result["apikey"]
        return self.appid, self.apikey

    def list_key(self) -> dict[str, Any]:
        return self._post("ListKey")

    def create_key(self, keyspec: str, origin: str, keyusage: str) -> dict[str, Any]:
        return self._post("CreateKey", {"keyspec": keyspec, "origin": origin, "keyusage": keyusage})

    def delete_key(self, keyid: str) -> dict[str, Any]:
        return self._post("DeleteKey", {"keyid": keyid})

    def enable_key(self, keyid: str) -> dict[str, Any]:
        return self._post("EnableKey", {"keyid": keyid})

    def disable_key(self, keyid: str) -> dict[str, Any]:
        return self._post("DisableKey", {"keyid": keyid})

    def delete_all_key(self) -> dict[str, Any]:
        return self._post("DeleteAllKey")

    def encrypt(self, aad: str, keyid: str, plaintext: str) -> dict[str, Any]:
        return self._post("Encrypt", {"aad": aad, "keyid": keyid, "plaintext": plaintext})

    def decrypt(self, aad: str, keyid: str, ciphertext: str) -> dict[str, Any]:
        return self._post("Decrypt", {"aad": aad, "keyid": keyid, "ciphertext": ciphertext})

    def asymm_encrypt(self, keyid: str, plaintext: str, padding_mode: str) -> dict[str, Any]:
        return self._post("AsymmetricEncrypt", {"keyid": keyid, "plaintext": plaintext, "padding_mode": padding_mode})

    def asymm_decrypt(self, keyid: str, ciphertext: str, padding_mode: str) -> dict[str, Any]:
        payload = {"keyid": keyid, "ciphertext": ciphertext, "padding_mode": padding_mode}
        return self._post("AsymmetricDecrypt", payload)

    def sign(self, keyid: str, padding_mode: str, digest_mode: str, message_type: str, message: str) -> dict[str, Any]:
        payload = {
            "keyid": keyid,
            "padding_mode": padding_mode,
            "digest_mode": digest_mode,
            "message_type": message_type,
            "message": message,
        }
        return self._post("Sign", payload)

    def verify(
        self, keyid: str, padding_mode: str, digest_mode: str, message_type: str, message: str, signature: str
    ) -> dict[str, Any]:
        payload = {
            "keyid": keyid,
            "padding_mode": padding_mode,
            "digest_mode": digest_mode,
            "message_type": message_type,
            "message": message,
            "signature": signature,
        }
        return self._post("Verify", payload)

    def generate_data_key(self, aad: str, keyid: str, keylen: int) -> dict[str, Any]:
        return self._post("GenerateDataKey", {"aad": aad, "keyid": keyid, "keylen": keylen})

    def generate_data_key_without_plaintext(self, aad: str, keyid: str, keylen: int) -> dict[str, Any]:
        return self._post("GenerateDataKeyWithoutPlaintext", {"aad": aad, "keyid": keyid, "keylen": keylen})

    def export_data_key(
        self, aad: str, keyid: str, old_data_key: str, ukeyid: str, padding_mode: str
    ) -> dict[str, Any]:
        payload = {
            "aad": aad,
            "keyid": keyid,
            "old_data_key": old_data_key,  # sic: the server expects olddatakey_base (we accept both)
            "ukeyid": ukeyid,
            "padding_mode": padding_mode,
        }
        return self._post("ExportDataKey", payload)

    def get_public_key(self, keyid: str) -> dict[str, Any]:
        return self._post("GetPublicKey", {"keyid": keyid})

    def get_parameters_for_import(self, keyid: str, keyspec: str) -> dict[str, Any]:
        return self._post("GetParametersForImport", {"keyid": keyid, "keyspec": keyspec})

    def import_key_material(self, keyid: str, key_material: str, padding_mode: str, importToken: str) -> dict[str, Any]:
        payload = {
            "keyid": keyid,
            "key_material": key_material,
            "padding_mode": padding_mode,
            "importToken": importToken,
        }
        return self._post("ImportKeyMaterial", payload)

    def create_secret(self, secret_name: str, secret_data: str, description: str | None = None) -> dict[str, Any]:
        return self._post(
            "CreateSecret", {"secretName": secret_name, "secretData": secret_data, "description": description}
        )

    def get_secret_value(self, secret_name: str) -> dict[str, Any]:
        return self._post("GetSecretValue", {"secretName": secret_name})

    def delete_secret(self, secret_name: str, force_delete: str | None = None) -> dict[str, Any]:
        return self._post("DeleteSecret", {"secretName": secret_name, "force_delete": force_delete})  # sic

    def list_secrets(self) -> dict[str, Any]:
        return self._post("ListSecrets", {})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def ehsm(live_server: LiveServer) -> Iterator[EhsmStyleClient]:
    client = EhsmStyleClient(live_server.url + "/ehsm")  # the original SDK wants /ehsm in its base URL
    client.enroll()
    yield client
    client.close()


def test_an_ehsm_style_client_works(ehsm: EhsmStyleClient) -> None:
    assert ehsm.get_version()["version"] == "0.3.2"
    aes = ehsm.create_key("EH_AES_GCM_256", "EH_INTERNAL_KEY", "EH_KEYUSAGE_ENCRYPT_DECRYPT")["keyid"]
    ciphertext = ehsm.encrypt(b64(b"aad"), aes, b64(b"hello eHSM"))["ciphertext"]
    assert base64.b64decode(ehsm.decrypt(b64(b"aad"), aes, ciphertext)["plaintext"]) == b"hello eHSM"
    made = ehsm.generate_data_key(b64(b"ctx"), aes, 16)
    assert set(made) == {"ciphertext", "plaintext"}
    assert ehsm.decrypt(b64(b"ctx"), aes, made["ciphertext"])["plaintext"] == made["plaintext"]
    assert "ciphertext" in ehsm.generate_data_key_without_plaintext(b64(b"ctx"), aes, 32)

    rsa_key = ehsm.create_key("EH_RSA_2048", "EH_INTERNAL_KEY", "EH_KEYUSAGE_ENCRYPT_DECRYPT")["keyid"]
    assert ehsm.get_public_key(rsa_key)["pubkey"].startswith("-----BEGIN RSA PUBLIC KEY-----")
    sealed = ehsm.asymm_encrypt(rsa_key, b64(b"rsa"), "EH_RSA_PKCS1_OAEP")["ciphertext"]
    assert base64.b64decode(ehsm.asymm_decrypt(rsa_key, sealed, "EH_RSA_PKCS1_OAEP")["plaintext"]) == b"rsa"
    exported = ehsm.export_data_key(b64(b"ctx"), aes, made["ciphertext"], rsa_key, "EH_RSA_PKCS1_OAEP")["newdatakey"]
    assert ehsm.asymm_decrypt(rsa_key, exported, "EH_RSA_PKCS1_OAEP")["plaintext"] == made["plaintext"]

    ec_key = ehsm.create_key("EH_EC_P256", "EH_INTERNAL_KEY", "EH_KEYUSAGE_SIGN_VERIFY")["keyid"]
    signature = ehsm.sign(ec_key, "EH_PAD_NONE", "EH_SHA_256", "EH_RAW", b64(b"msg"))["signature"]
    assert ehsm.verify(ec_key, "EH_PAD_NONE", "EH_SHA_256", "EH_RAW", b64(b"msg"), signature)["result"] is True
    assert ehsm.verify(ec_key, "EH_PAD_NONE", "EH_SHA_256", "EH_RAW", b64(b"msh"), signature)["result"] is False

    external = ehsm.create_key("EH_AES_GCM_128", "EH_EXTERNAL_KEY", "EH_KEYUSAGE_ENCRYPT_DECRYPT")["keyid"]
    params = ehsm.get_parameters_for_import(external, "EH_RSA_2048")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    public = serialization.load_pem_public_key(params["pubkey"].encode())
    assert isinstance(public, rsa.RSAPublicKey)
    wrapped = public.encrypt(b"0123456789abcdef", padding.PKCS1v15())
    assert ehsm.import_key_material(external, b64(wrapped), "EH_RSA_PKCS1", params["importToken"])["result"] is True

    listing = ehsm.list_key()["list"]
    assert {k["keyid"] for k in listing} == {aes, rsa_key, ec_key, external}
    assert all(set(k) >= {"keyid", "alias", "keyspec", "keyState", "creationDate", "expireTime"} for k in listing)
    ehsm.disable_key(aes)
    with pytest.raises(InvalidParamException, match="keyid is disabled"):
        ehsm.encrypt(b64(b"aad"), aes, b64(b"x"))
    ehsm.enable_key(aes)
    ehsm.delete_key(rsa_key)
    ehsm.delete_all_key()
    assert ehsm.list_key()["list"] == []


def test_the_original_sdks_empty_aad_is_refused_as_the_contract_says(ehsm: EhsmStyleClient) -> None:
    """The original SDK signs ``aad=`` while the server's sign string drops empty values (contract 2.3)."""
    keyid = ehsm.create_key("EH_AES_GCM_256", "EH_INTERNAL_KEY", "EH_KEYUSAGE_ENCRYPT_DECRYPT")["keyid"]
    with pytest.raises(InvalidParamException) as caught:
        ehsm.encrypt("", keyid, b64(b"x"))
    assert (caught.value.code, caught.value.message) == (400, "sign error")


def test_our_sdk_and_an_ehsm_style_client_share_keys_and_ciphertexts(
    ehsm: EhsmStyleClient, live_server: LiveServer
) -> None:
    from ehsm_kms.client import Client

    keyid = ehsm.create_key("EH_SM4_CBC", "EH_INTERNAL_KEY", "EH_KEYUSAGE_ENCRYPT_DECRYPT")["keyid"]
    with Client(live_server.url + "/ehsm", ehsm.appid, ehsm.apikey) as ours:
        mine = ours.encrypt(keyid, b"from ehsm_kms", aad=b"a")
        assert base64.b64decode(ehsm.decrypt(b64(b"a"), keyid, b64(mine))["plaintext"]) == b"from ehsm_kms"
        theirs = ehsm.encrypt(b64(b"a"), keyid, b64(b"from ehsm"))["ciphertext"]
        assert ours.decrypt(keyid, base64.b64decode(theirs), aad=b"a") == b"from ehsm"


def test_an_ehsm_style_client_and_the_secret_manager(ehsm: EhsmStyleClient) -> None:
    require_secret_actions()
    ehsm.create_secret("legacy", "value", description="d")
    assert ehsm.get_secret_value("legacy")["secretData"] == "value"
    assert [s["secretName"] for s in ehsm.list_secrets()["secretList"]] == ["legacy"]
    ehsm.delete_secret("legacy", force_delete="true")  # the SDK's spelling: accepted as forceDelete
    assert ehsm.list_secrets()["totalCount"] == 0
