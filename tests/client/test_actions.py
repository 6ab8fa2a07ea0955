"""Every action of the server through the SDK, in all four pairings: ``Client`` and ``AsyncClient``, each against a
live server on a loopback socket and against the app in-process (``httpx.ASGITransport``).

Results are checked independently where the client can: signatures are verified here with the public key from
GetPublicKey, RSA ciphertexts made here are opened by the server, imported key material is wrapped here.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ehsm_kms import errors
from ehsm_kms.client import DataKey, Enrollment, ImportParameters, KeyInfo, Version
from ehsm_kms.core.specs import KeySpec, KeyUsage
from tests.client.harness import Kms

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def test_version_and_enroll(kms: Kms) -> None:
    anonymous = kms.client(enroll=False)
    version = anonymous.get_version()
    assert isinstance(version, Version) and version.version == "0.3.2" and len(version.git_sha) == 7
    assert version.server and version.server.startswith("ehsm-kms ")
    made = anonymous.enroll()
    assert isinstance(made, Enrollment) and len(made.apikey) == 32
    assert made.apikey not in repr(made)
    assert anonymous.appid == made.appid  # a client without credentials adopts the new app's
    assert anonymous.list_keys() == ()
    # A client that has credentials keeps them.
    again = anonymous.enroll()
    assert again.appid != made.appid and anonymous.appid == made.appid


def test_key_lifecycle(kms: Kms) -> None:
    client = kms.client()
    aes = client.create_key()
    ec_key = client.create_key(KeySpec.EH_EC_P256)  # enums work as well as names; EC signs by default
    keys = {k.keyid: k for k in client.list_keys()}
    assert set(keys) == {aes, ec_key}
    info = keys[aes]
    assert isinstance(info, KeyInfo) and info.keyspec == "EH_AES_GCM_256" and info.enabled
    assert info.created_at is not None and info.expires_at is not None and info.expires_at > info.created_at
    client.sign(ec_key, b"m")  # SIGN_VERIFY usage was chosen

    client.disable_key(aes)
    assert not {k.keyid: k for k in client.list_keys()}[aes].enabled
    with pytest.raises(errors.KeyDisabled) as caught:
        client.encrypt(aes, b"x")
    assert caught.value.message == "keyid is disabled" and caught.value.exit_code == errors.EXIT_BAD_REQUEST
    client.enable_key(aes)
    assert client.decrypt(aes, client.encrypt(aes, b"x")) == b"x"

    client.delete_key(aes)
    with pytest.raises(errors.KeyNotFound) as lost:
        client.encrypt(aes, b"x")
    assert lost.value.message == "keyid error" and lost.value.exit_code == errors.EXIT_NOT_FOUND
    with pytest.raises(errors.KeyStateError):
        client.enable_key(aes)
    client.delete_all_keys()
    assert client.list_keys() == ()


def test_symmetric_encryption(kms: Kms) -> None:
    client = kms.client()
    for spec in ("EH_AES_GCM_128", "EH_AES_GCM_256", "EH_SM4_CBC"):
        keyid = client.create_key(spec)
        for aad in (None, b"", b"context \x00\xff"):
            ciphertext = client.encrypt(keyid, b"secret data", aad=aad)
            assert client.decrypt(keyid, ciphertext, aad=aad) == b"secret data"
        ciphertext = client.encrypt(keyid, bytearray(b"x" * 6144), aad=memoryview(b"ctx"))
        with pytest.raises(errors.DecryptionFailed) as caught:
            client.decrypt(keyid, ciphertext, aad=b"other")
        assert caught.value.exit_code == errors.EXIT_CRYPTO
        # An empty aad is the same as none: the server drops empty fields from the sign string and so does the SDK.
        assert client.decrypt(keyid, client.encrypt(keyid, b"y", aad=b""), aad=None) == b"y"
    with pytest.raises(TypeError, match="bytes"):
        client.encrypt(keyid, "text is not bytes")


def test_asymmetric_encryption(kms: Kms) -> None:
    client = kms.client()
    keyid = client.create_key("EH_RSA_2048", keyusage=KeyUsage.EH_KEYUSAGE_ENCRYPT_DECRYPT)
    pem = client.get_public_key(keyid)
    assert pem.startswith("-----BEGIN RSA PUBLIC KEY-----")
    public = serialization.load_pem_public_key(pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    for mode in ("EH_RSA_PKCS1_OAEP", "EH_RSA_PKCS1"):
        ciphertext = client.asymmetric_encrypt(keyid, b"pq", padding_mode=mode)
        assert len(ciphertext) == 256
        assert client.asymmetric_decrypt(keyid, ciphertext, padding_mode=mode) == b"pq"
    assert client.asymmetric_decrypt(keyid, public.encrypt(b"made here", OAEP)) == b"made here"
    sm2 = client.create_key("EH_SM2", keyusage="EH_KEYUSAGE_ENCRYPT_DECRYPT")
    assert client.asymmetric_decrypt(sm2, client.asymmetric_encrypt(sm2, b"sm2 text")) == b"sm2 text"
    with pytest.raises(errors.CryptoError) as caught:
        client.asymmetric_decrypt(keyid, b"\x00" * 256)
    assert caught.value.message == "Server exception." and caught.value.exit_code == errors.EXIT_CRYPTO


def test_signatures(kms: Kms) -> None:
    client = kms.client()
    rsa_key = client.create_key("EH_RSA_2048", keyusage="EH_KEYUSAGE_SIGN_VERIFY")
    rsa_public = serialization.load_pem_public_key(client.get_public_key(rsa_key).encode())
    assert isinstance(rsa_public, rsa.RSAPublicKey)
    signature = client.sign(rsa_key, b"message")  # PSS, SHA-256
    rsa_public.verify(
        signature, b"message", padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
    )
    assert client.verify(rsa_key, b"message", signature)
    assert not client.verify(rsa_key, b"massage", signature)
    pkcs1 = client.sign(rsa_key, b"m", padding_mode="EH_RSA_PKCS1", digest_mode="EH_SHA_384")
    rsa_public.verify(pkcs1, b"m", padding.PKCS1v15(), hashes.SHA384())

    ec_key = client.create_key("EH_EC_P256")
    ec_public = serialization.load_pem_public_key(client.get_public_key(ec_key).encode())
    assert isinstance(ec_public, ec.EllipticCurvePublicKey)
    digest = hashlib.sha256(b"pre-hashed").digest()
    der = client.sign(ec_key, digest, message_type="EH_DIGEST")
    ec_public.verify(der, b"pre-hashed", ec.ECDSA(hashes.SHA256()))
    assert client.verify(ec_key, digest, der, message_type="EH_DIGEST")

    aes = client.create_key()
    with pytest.raises(errors.CryptoError):
        client.sign(aes, b"m")


def test_data_keys(kms: Kms) -> None:
    client = kms.client()
    keyid = client.create_key()
    made = client.generate_data_key(keyid, 24, aad=b"ctx")
    assert isinstance(made, DataKey) and len(made.plaintext) == 24
    assert made.plaintext.hex() not in repr(made)
    assert client.decrypt(keyid, made.ciphertext, aad=b"ctx") == made.plaintext
    blind = client.generate_data_key_without_plaintext(keyid)
    assert len(client.decrypt(keyid, blind)) == 32

    target = client.create_key("EH_RSA_2048", keyusage="EH_KEYUSAGE_ENCRYPT_DECRYPT")
    exported = client.export_data_key(keyid, target, made.ciphertext, aad=b"ctx")
    assert client.asymmetric_decrypt(target, exported) == made.plaintext  # always OAEP-SHA-256
    with pytest.raises(errors.DataKeyFailed) as caught:  # the contract's answer for ExportDataKey
        client.export_data_key(keyid, target, made.ciphertext, aad=b"wrong")
    assert caught.value.exit_code == errors.EXIT_CRYPTO


def test_import_key_material(kms: Kms) -> None:
    client = kms.client()
    # Both steps by hand, wrapping here with cryptography ...
    keyid = client.create_key("EH_AES_GCM_256", "EH_EXTERNAL_KEY")
    params = client.get_parameters_for_import(keyid, "EH_RSA_3072")
    assert isinstance(params, ImportParameters) and params.keyid == keyid
    assert params.import_token not in repr(params)
    public = serialization.load_pem_public_key(params.pubkey.encode())
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 3072
    material = bytes(range(32))
    assert client.import_key_material(keyid, public.encrypt(material, OAEP), params.import_token)
    assert client.decrypt(keyid, client.encrypt(keyid, b"byok")) == b"byok"
    # ... and the token is single-use.
    with pytest.raises(errors.ImportTokenError):
        client.import_key_material(keyid, public.encrypt(material, OAEP), params.import_token)

    # The helper does both steps (PKCS#1 v1.5 here), wrapping with the client-side primitive.
    other = client.create_key("EH_HMAC", "EH_EXTERNAL_KEY")
    assert client.import_key(other, b"k" * 32, padding_mode="EH_RSA_PKCS1")
    import hmac as std_hmac

    assert client.generate_mac(other, b"msg") == std_hmac.new(b"k" * 32, b"msg", "sha256").digest()


def test_random_and_macs(kms: Kms) -> None:
    client = kms.client()
    first, second = client.generate_random(32), client.generate_random(32)
    assert len(first) == 32 and first != second
    assert len(client.generate_random(1024)) == 1024
    with pytest.raises(errors.PayloadError) as caught:
        client.generate_random(1025)
    assert caught.value.message == "Parameter invalid, The length value must be less than or equal to 1024."

    keyid = client.create_key("EH_HMAC")
    tag = client.generate_mac(keyid, b"message")
    assert len(tag) == 32
    assert client.verify_mac(keyid, b"message", tag)
    assert not client.verify_mac(keyid, b"message!", tag)
    tag512 = client.generate_mac(keyid, b"message", digest_mode="EH_SHA_512")
    assert len(tag512) == 64 and client.verify_mac(keyid, b"message", tag512, digest_mode="EH_SHA_512")


def test_generic_call_and_wire_errors(kms: Kms) -> None:
    client = kms.client()
    keyid = client.call("CreateKey", {"keyspec": "EH_AES_GCM_128", "origin": "EH_INTERNAL_KEY",
                                      "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"})["keyid"]  # fmt: skip
    assert isinstance(keyid, str)
    with pytest.raises(errors.ApiNotFound) as caught:
        client.call("NoSuchAction")
    assert "NoSuchAction" in (caught.value.message or "")
    with pytest.raises(errors.PayloadError) as bad:
        client.encrypt("not-a-keyid", b"x")
    assert bad.value.message == "Parameter invalid, The keyid length error."

    # Wrong credentials: a wrong APIKey is "sign error", an unknown appid is UnknownApp; both exit 3.
    wrong_key = kms.client(enroll=False, appid=client.appid, apikey="x" * 32)
    with pytest.raises(errors.SignError) as sign_error:
        wrong_key.list_keys()
    assert sign_error.value.exit_code == errors.EXIT_AUTH
    nobody = kms.client(enroll=False, appid="00000000-0000-0000-0000-000000000000", apikey="x" * 32)
    with pytest.raises(errors.UnknownApp):
        nobody.list_keys()

    # Another app's key answers exactly like a missing one.
    other = kms.client()
    with pytest.raises(errors.KeyNotFound):
        other.decrypt(keyid, client.encrypt(keyid, b"mine"))


def _assert_same_surface(sync_cls: Any, async_cls: Any) -> None:
    import inspect

    def public(cls: Any) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    sync_api, async_api = public(sync_cls), public(async_cls)
    assert set(sync_api) == set(async_api)
    for name, sig in sync_api.items():
        assert [p.name for p in sig.parameters.values()] == [p.name for p in async_api[name].parameters.values()], name
        assert inspect.iscoroutinefunction(getattr(async_cls, name)) or name == "set_credentials", name


def test_client_and_async_client_have_the_same_methods() -> None:
    from ehsm_kms.client import AsyncClient, Client

    _assert_same_surface(Client, AsyncClient)
