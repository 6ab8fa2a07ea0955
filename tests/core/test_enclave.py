"""The Enclave facade end to end (in-process): every operation, and that it authorizes instead of obeying."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_prim

from ehsm_kms import errors
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.enclave import Enclave
from ehsm_kms.core.protocol import AppCredential, Call, KeyRef
from ehsm_kms.core.proxy import raise_reply
from ehsm_kms.core.specs import KeySpec, KeyUsage, Origin
from tests.signing import signed

ED = "EH_KEYUSAGE_ENCRYPT_DECRYPT"
SV = "EH_KEYUSAGE_SIGN_VERIFY"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclasses.dataclass
class App:
    enc: Enclave
    appid: str
    apikey: str
    cred: AppCredential
    n: int = 0

    def call(self, op: str, payload: dict[str, Any] | None, keys: list[KeyRef] = (), **args: Any) -> Any:  # type: ignore[assignment]
        req = signed(self.appid, self.apikey, payload)
        return raise_reply(self.enc.handle(Call(op=op, auth=req, app=self.cred, keys=list(keys), args=args)))

    def create(self, spec: str, usage: str = ED, origin: str = "EH_INTERNAL_KEY") -> KeyRef:
        self.n += 1
        keyid = f"00000000-0000-4000-8000-{self.n:012d}"
        made = self.call("create_key", {"keyspec": spec, "keyusage": usage, "origin": origin}, keyid=keyid, version=1)
        return KeyRef(keyid, self.appid, int(KeySpec[spec]), int(KeyUsage[usage]), int(Origin[origin]), 1, made["blob"])


@pytest.fixture(scope="module")
def enclave() -> Enclave:
    return Enclave(DomainKeyRing.generate())


def _enroll(enc: Enclave) -> App:
    made = raise_reply(enc.handle(Call(op="enroll")))
    assert len(made["apikey"]) == 32
    return App(enc, made["appid"], made["apikey"], AppCredential(made["appid"], made["apikey_blob"]))


@pytest.fixture()
def app(enclave: Enclave) -> Iterator[App]:
    yield _enroll(enclave)


def test_self_tests_ran(enclave: Enclave) -> None:
    names = [line.split(":")[0] for line in enclave.self_test_report]
    assert names == ["AES-GCM", "SM4", "HMAC", "HKDF", "RSA", "ECDSA", "SM2"]


@pytest.mark.parametrize("spec", ["EH_AES_GCM_128", "EH_AES_GCM_192", "EH_AES_GCM_256", "EH_SM4_CTR", "EH_SM4_CBC"])
def test_symmetric_round_trip_and_aad(app: App, spec: str) -> None:
    key = app.create(spec)
    pt, aad = b"hello \x00 world" * 10, b"context"
    ct = app.call("encrypt", {"keyid": key.keyid, "plaintext": b64(pt), "aad": b64(aad)}, [key])["ciphertext"]
    got = app.call("decrypt", {"keyid": key.keyid, "ciphertext": ct, "aad": b64(aad)}, [key])["plaintext"]
    assert base64.b64decode(got) == pt
    with pytest.raises(errors.DecryptionFailed):
        app.call("decrypt", {"keyid": key.keyid, "ciphertext": ct, "aad": b64(b"other")}, [key])
    with pytest.raises(errors.DecryptionFailed):
        app.call("decrypt", {"keyid": key.keyid, "ciphertext": ct}, [key])


def test_data_keys_and_export(app: App) -> None:
    cmk = app.create("EH_AES_GCM_256")
    made = app.call("generate_data_key", {"keyid": cmk.keyid, "keylen": 48, "aad": b64(b"a")}, [cmk])
    assert len(base64.b64decode(made["plaintext"])) == 48
    back = app.call("decrypt", {"keyid": cmk.keyid, "ciphertext": made["ciphertext"], "aad": b64(b"a")}, [cmk])
    assert back["plaintext"] == made["plaintext"]
    only = app.call("generate_data_key_without_plaintext", {"keyid": cmk.keyid, "keylen": 16}, [cmk])
    assert set(only) == {"ciphertext"}
    for spec in ("EH_RSA_2048", "EH_SM2"):
        ukey = app.create(spec)
        payload = {
            "keyid": cmk.keyid,
            "ukeyid": ukey.keyid,
            "olddatakey_base": made["ciphertext"],
            "aad": b64(b"a"),
        }
        new = app.call("export_data_key", payload, [cmk, ukey])["newdatakey"]
        pad = "EH_RSA_PKCS1_OAEP"
        plain = app.call("asymmetric_decrypt", {"keyid": ukey.keyid, "ciphertext": new, "padding_mode": pad}, [ukey])
        assert plain["plaintext"] == made["plaintext"]
    # The spellings existing clients send are read from the signed payload as well.
    alias = {"keyid": cmk.keyid, "ukeyid": ukey.keyid, "old_data_key": made["ciphertext"], "aad": b64(b"a")}
    assert app.call("export_data_key", alias, [cmk, ukey])["newdatakey"]
    with pytest.raises(errors.DataKeyFailed):
        bad = dict(payload, aad=b64(b"wrong"))
        app.call("export_data_key", bad, [cmk, ukey])


@pytest.mark.parametrize(
    ("spec", "digest", "padding"),
    [
        ("EH_RSA_2048", "EH_SHA_256", "EH_RSA_PKCS1"),
        ("EH_RSA_3072", "EH_SHA_384", "EH_RSA_PKCS1_PSS"),
        ("EH_EC_P224", "EH_SHA_224", "EH_PAD_NONE"),
        ("EH_EC_P256", "EH_SHA_256", "EH_PAD_NONE"),
        ("EH_EC_P256K", "EH_SHA_256", "EH_PAD_NONE"),
        ("EH_EC_P384", "EH_SHA_384", "EH_PAD_NONE"),
        ("EH_EC_P521", "EH_SHA_512", "EH_PAD_NONE"),
        ("EH_SM2", "EH_SM3", "EH_PAD_NONE"),
    ],
)
def test_sign_verify(app: App, spec: str, digest: str, padding: str) -> None:
    key = app.create(spec, SV)
    base = {
        "keyid": key.keyid,
        "message": b64(b"message"),
        "message_type": "EH_RAW",
        "digest_mode": digest,
        "padding_mode": padding,
    }
    sig = app.call("sign", base, [key])["signature"]
    assert app.call("verify", dict(base, signature=sig), [key]) == {"result": True}
    other = dict(base, message=b64(b"other message"), signature=sig)
    assert app.call("verify", other, [key]) == {"result": False}
    pem = app.call("get_public_key", {"keyid": key.keyid}, [key])["pubkey"]
    marker = "-----BEGIN RSA PUBLIC KEY-----" if spec.startswith("EH_RSA") else "-----BEGIN PUBLIC KEY-----"
    assert pem.startswith(marker) and pem.endswith("\n")


def test_sign_key_cannot_encrypt_and_symmetric_has_no_public_key(app: App) -> None:
    ec = app.create("EH_EC_P256", SV)
    with pytest.raises(errors.CryptoError):
        app.call("encrypt", {"keyid": ec.keyid, "plaintext": b64(b"x")}, [ec])
    aes = app.create("EH_AES_GCM_128")
    with pytest.raises(errors.CryptoError):
        app.call("get_public_key", {"keyid": aes.keyid}, [aes])
    with pytest.raises(errors.CryptoError):
        app.create("EH_AES_GCM_128", SV)


def test_hmac_keys_and_random(app: App) -> None:
    key = app.create("EH_HMAC", SV)
    mac = app.call("generate_mac", {"keyid": key.keyid, "message": b64(b"m"), "digest_mode": "EH_SHA_384"}, [key])
    ok = app.call(
        "verify_mac",
        {"keyid": key.keyid, "message": b64(b"m"), "digest_mode": "EH_SHA_384", "mac": mac["mac"]},
        [key],
    )
    assert ok == {"result": True}
    assert len(base64.b64decode(app.call("generate_random", {"length": 1024})["random"])) == 1024


def test_wrong_signature_is_refused_before_any_key_use(app: App) -> None:
    key = app.create("EH_AES_GCM_256")
    req = signed(app.appid, "x" * 32, {"keyid": key.keyid, "plaintext": b64(b"p")})
    reply = app.enc.handle(Call(op="encrypt", auth=req, app=app.cred, keys=[key]))
    assert reply.error == "SignError" and reply.message == "sign error"


def test_another_apps_key_or_blob_is_refused(enclave: Enclave) -> None:
    alice, mallory = _enroll(enclave), _enroll(enclave)
    key = alice.create("EH_AES_GCM_256")
    payload = {"keyid": key.keyid, "plaintext": b64(b"secret")}
    # Mallory signs her own request and presents Alice's key row as it is.
    with pytest.raises(errors.KeyNotFound):
        mallory.call("encrypt", payload, [key])
    # ... or relabels the row with her appid: the blob is bound to Alice's, so it fails inside the core.
    with pytest.raises(errors.CryptoError):
        mallory.call("encrypt", payload, [msgspec.structs.replace(key, appid=mallory.appid)])
    # A compromised outer layer hands Alice's APIKey blob in for Mallory's appid: it does not open.
    req = signed(mallory.appid, mallory.apikey, payload)
    stolen = AppCredential(mallory.appid, alice.cred.apikey_blob)
    reply = enclave.handle(Call(op="encrypt", auth=req, app=stolen, keys=[key]))
    assert reply.error == "ApiKeyUnavailable"


def test_changed_metadata_or_other_keyid_fails(app: App) -> None:
    key = app.create("EH_AES_GCM_256")
    payload = {"keyid": key.keyid, "plaintext": b64(b"p")}
    with pytest.raises(errors.KeyNotFound):  # the payload names another key than the row given
        app.call("encrypt", dict(payload, keyid="11111111-1111-4111-8111-111111111111"), [key])
    flipped = msgspec.structs.replace(key, keyspec=int(KeySpec.EH_AES_GCM_128))
    with pytest.raises(errors.CryptoError):
        app.call("encrypt", payload, [flipped])


def test_byok_import(app: App) -> None:
    key = app.create("EH_AES_GCM_256", origin="EH_EXTERNAL_KEY")
    assert key.blob == b""
    with pytest.raises(errors.CryptoError):  # not imported yet
        app.call("encrypt", {"keyid": key.keyid, "plaintext": b64(b"p")}, [key])
    params = app.call("get_parameters_for_import", {"keyid": key.keyid, "keyspec": "EH_RSA_3072"}, [key])
    assert params["pubkey"].startswith("-----BEGIN RSA PUBLIC KEY-----")
    pub = serialization.load_pem_public_key(params["pubkey"].encode())
    assert isinstance(pub, rsa_prim.RSAPublicKey)
    material = bytes(range(32))
    oaep = rsa_padding.OAEP(rsa_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    wrapped = pub.encrypt(material, oaep)
    payload = {
        "keyid": key.keyid,
        "padding_mode": "EH_RSA_PKCS1_OAEP",
        "key_material": b64(wrapped),
        "importToken": params["importToken"],
    }
    args = {
        "wrapping_blob": params["wrapping_blob"],
        "wrapping_spec": params["wrapping_spec"],
        "token_id": params["token_id"],
        "expires_ms": params["expires_ms"],
    }
    # A token whose fields were changed is refused.
    forged = base64.b64encode(base64.b64decode(params["importToken"]).replace(b'"keyid":"0', b'"keyid":"1')).decode()
    with pytest.raises(errors.ImportTokenError):
        app.call("import_key_material", dict(payload, importToken=forged), [key], **args)
    blob = app.call("import_key_material", payload, [key], **args)["blob"]
    imported = msgspec.structs.replace(key, blob=blob)
    ct = app.call("encrypt", {"keyid": key.keyid, "plaintext": b64(b"byok")}, [imported])["ciphertext"]
    assert app.call("decrypt", {"keyid": key.keyid, "ciphertext": ct}, [imported])["plaintext"] == b64(b"byok")
    # Imported material is never replaced by a second GetParametersForImport.
    with pytest.raises(errors.CryptoError):
        app.call("get_parameters_for_import", {"keyid": key.keyid, "keyspec": "EH_RSA_2048"}, [imported])


def test_import_token_expires(enclave: Enclave) -> None:
    now = [1_700_000_000_000]
    enc = Enclave(enclave.ring, clock_ms=lambda: now[0], run_self_tests=False)
    app = _enroll(enc)
    key = app.create("EH_SM4_CBC", origin="EH_EXTERNAL_KEY")
    params = app.call("get_parameters_for_import", {"keyid": key.keyid, "keyspec": "EH_RSA_2048"}, [key])
    now[0] += 24 * 3600 * 1000 + 1
    payload = {
        "keyid": key.keyid,
        "padding_mode": "EH_RSA_PKCS1",
        "key_material": b64(b"\x00" * 256),
        "importToken": params["importToken"],
    }
    args = {
        "wrapping_blob": params["wrapping_blob"],
        "wrapping_spec": params["wrapping_spec"],
        "token_id": params["token_id"],
        "expires_ms": params["expires_ms"],
    }
    with pytest.raises(errors.ImportTokenExpired):
        app.call("import_key_material", payload, [key], **args)


def test_unknown_operation_and_garbage_never_crash(app: App) -> None:
    assert app.enc.handle(Call(op="no_such_op")).error == "CryptoError"
    key = app.create("EH_AES_GCM_128")
    for payload in (
        {"keyid": key.keyid, "plaintext": 5},
        {"keyid": key.keyid, "plaintext": "!!notb64"},
        {"keyid": key.keyid},
        {"keyid": key.keyid, "plaintext": b64(b"x" * 6145)},
    ):
        with pytest.raises(errors.CryptoError):
            app.call("encrypt", payload, [key])
