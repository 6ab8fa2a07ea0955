"""The cryptographic actions against the live server, with exact bodies for their failures.

Results are checked independently where the client can: RSA and ECDSA signatures are verified here with the
public key from GetPublicKey, RSA ciphertexts made here are decrypted by the server (so OAEP really is
SHA-256/MGF1-SHA-256 with an empty label), and data keys come back through Decrypt and AsymmetricDecrypt.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from tests.e2e import (
    DATAKEY_FAILED,
    DECRYPTION_FAILED,
    KEYID_ERROR,
    SERVER_EXCEPTION,
    App,
    b64,
    invalid,
    missing,
    unb64,
)
from tests.e2e.conftest import Keyring

SYMMETRIC = ["aes128", "aes192", "aes256", "sm4ctr", "sm4cbc"]
RSA_ENC = {"rsa2048": 256, "rsa3072": 384, "rsa4096": 512}
RSA_SIGN = {"rsa2048s": 256, "rsa3072s": 384, "rsa4096s": 512}
EC_SIGN = {
    "p224": ec.SECP224R1,
    "p256": ec.SECP256R1,
    "p256k": ec.SECP256K1,
    "p384": ec.SECP384R1,
    "p521": ec.SECP521R1,
}
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "EH_SHA_224": hashes.SHA224,
    "EH_SHA_256": hashes.SHA256,
    "EH_SHA_384": hashes.SHA384,
    "EH_SHA_512": hashes.SHA512,
    "EH_SM3": hashes.SM3,
}
SHA_DIGESTS = ["EH_SHA_224", "EH_SHA_256", "EH_SHA_384", "EH_SHA_512"]
MESSAGE = b"The quick brown fox jumps over the lazy dog"


def ciphertext_length(name: str, n: int) -> int:
    """Our formats (``ehsm_kms.core.ciphertext``): a 5-byte header, then nonce, payload and tag."""
    if name.startswith("aes"):
        return 5 + 12 + n + 16
    if name == "sm4ctr":
        return 5 + 16 + n + 32
    return 5 + 16 + 16 * (n // 16 + 1) + 32


def digest_of(name: str, message: bytes) -> bytes:
    h = hashes.Hash(DIGESTS[name]())
    h.update(message)
    return h.finalize()


_PUBLIC_KEYS: dict[tuple[str, str], Any] = {}


def public_key(app: App, keyid: str) -> Any:
    """The key's public half, fetched once per server and key."""
    where = (app.wire.url, keyid)
    if where not in _PUBLIC_KEYS:
        pem = app.ok("GetPublicKey", {"keyid": keyid})["pubkey"]
        _PUBLIC_KEYS[where] = serialization.load_pem_public_key(pem.encode())
    return _PUBLIC_KEYS[where]


# ------------------------------------------------------------------------------ Encrypt / Decrypt


@pytest.mark.parametrize("name", SYMMETRIC)
@pytest.mark.parametrize("size", [1, 16, 17, 6144])
def test_encrypt_decrypt_round_trip(keyring: Keyring, name: str, size: int) -> None:
    app, keyid = keyring.app, keyring[name]
    plaintext = bytes(i % 251 for i in range(size))
    for aad in ("", b64(b"context"), None):
        payload: dict[str, Any] = {"keyid": keyid, "plaintext": b64(plaintext)}
        if aad is not None:
            payload["aad"] = aad
        out = app.call("Encrypt", payload)
        assert out["code"] == 200 and out["message"] == "success!", out
        assert set(out["result"]) == {"ciphertext"}
        ct = out["result"]["ciphertext"]
        assert len(unb64(ct)) == ciphertext_length(name, size)
        back: dict[str, Any] = {"keyid": keyid, "ciphertext": ct}
        if aad is not None:
            back["aad"] = aad
        assert app.call("Decrypt", back) == {
            "code": 200,
            "message": "success!",
            "result": {"plaintext": b64(plaintext)},
        }


@pytest.mark.parametrize("name", SYMMETRIC)
def test_fresh_ciphertext_every_time(keyring: Keyring, name: str) -> None:
    payload = {"keyid": keyring[name], "plaintext": b64(b"same")}
    assert keyring.app.ok("Encrypt", payload) != keyring.app.ok("Encrypt", payload)


@pytest.mark.parametrize("name", SYMMETRIC)
def test_aad_mismatch_fails(keyring: Keyring, name: str) -> None:
    """SM4 included: ours binds the aad (the original's SM4 ignored it, contract 12.1.10)."""
    app, keyid = keyring.app, keyring[name]
    ct = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"secret"), "aad": b64(b"right")})["ciphertext"]
    for aad in (b64(b"wrong"), b64(b"righ"), "", None):
        payload = {"keyid": keyid, "ciphertext": ct}
        if aad is not None:
            payload["aad"] = aad
        assert app.call("Decrypt", payload) == DECRYPTION_FAILED, aad
    # Made without aad, opened with one.
    ct = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"secret")})["ciphertext"]
    assert app.call("Decrypt", {"keyid": keyid, "ciphertext": ct, "aad": b64(b"x")}) == DECRYPTION_FAILED


@pytest.mark.parametrize("name", SYMMETRIC)
def test_every_changed_ciphertext_byte_fails(keyring: Keyring, name: str) -> None:
    """Each byte flipped in turn, then truncation and extension: one body for all (no oracle)."""
    app, keyid = keyring.app, keyring[name]
    aad = b64(b"bound")
    data = unb64(app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"x"), "aad": aad})["ciphertext"])
    variants = [data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :] for i in range(len(data))]
    variants += [data[:-1], data + b"\x00", data[:5], data[5:]]
    for i, changed in enumerate(variants):
        out = app.call("Decrypt", {"keyid": keyid, "ciphertext": b64(changed), "aad": aad})
        assert out == DECRYPTION_FAILED, (i, out)
    assert app.ok("Decrypt", {"keyid": keyid, "ciphertext": b64(data), "aad": aad})["plaintext"] == b64(b"x")


def test_ciphertext_of_another_key_fails(keyring: Keyring, app: App) -> None:
    other = app.create_key("EH_AES_GCM_256")
    ct = app.ok("Encrypt", {"keyid": other, "plaintext": b64(b"x")})["ciphertext"]
    assert keyring.app.call("Decrypt", {"keyid": keyring["aes256"], "ciphertext": ct}) == DECRYPTION_FAILED
    sm4 = keyring.app.ok("Encrypt", {"keyid": keyring["sm4ctr"], "plaintext": b64(b"x")})["ciphertext"]
    assert keyring.app.call("Decrypt", {"keyid": keyring["sm4cbc"], "ciphertext": sm4}) == DECRYPTION_FAILED
    assert keyring.app.call("Decrypt", {"keyid": keyring["aes256"], "ciphertext": sm4}) == DECRYPTION_FAILED


def test_size_limits_of_encrypt(keyring: Keyring) -> None:
    app, keyid = keyring.app, keyring["aes256"]
    assert app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"\x00" * 6145)}) == invalid(
        "plaintext", "length error."
    )
    # 6144 bytes and the largest aad together: the original's 12 KiB FFI request limit ("Argument bad.") is gone.
    big_aad = b64(b"a" * 6144)
    ct = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"p" * 6144), "aad": big_aad})["ciphertext"]
    assert app.ok("Decrypt", {"keyid": keyid, "ciphertext": ct, "aad": big_aad})["plaintext"] == b64(b"p" * 6144)
    assert app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"p"), "aad": b64(b"a" * 6145)}) == invalid(
        "aad", "length error."
    )


def test_sm4_cbc_ciphertext_of_the_largest_plaintext_decrypts(keyring: Keyring) -> None:
    """The original's Decrypt limit refused its own SM4-CBC ciphertexts of 6144 bytes (contract 4.6)."""
    app, keyid = keyring.app, keyring["sm4cbc"]
    ct = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"s" * 6144)})["ciphertext"]
    assert len(ct) > 8232
    assert app.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == b64(b"s" * 6144)


@pytest.mark.parametrize("name", ["rsa2048", "rsa2048s", "p256", "p256e", "sm2", "hmac"])
def test_encrypt_with_a_key_that_cannot(keyring: Keyring, name: str) -> None:
    app, keyid = keyring.app, keyring[name]
    assert app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"x")}) == SERVER_EXCEPTION
    ct = app.ok("Encrypt", {"keyid": keyring["aes256"], "plaintext": b64(b"x")})["ciphertext"]
    assert app.call("Decrypt", {"keyid": keyid, "ciphertext": ct}) == SERVER_EXCEPTION
    assert app.call("GenerateDataKey", {"keyid": keyid, "keylen": 16}) == SERVER_EXCEPTION


# ------------------------------------------------------------------------------ data keys


@pytest.mark.parametrize("name", SYMMETRIC)
@pytest.mark.parametrize("keylen", [1, 32, 1024])
def test_generate_data_key(keyring: Keyring, name: str, keylen: int) -> None:
    app, keyid = keyring.app, keyring[name]
    aad = b64(b"dk context")
    out = app.call("GenerateDataKey", {"keyid": keyid, "keylen": keylen, "aad": aad})
    assert out["code"] == 200 and out["message"] == "success!", out
    assert list(out["result"]) == ["ciphertext", "plaintext"]
    datakey = unb64(out["result"]["plaintext"])
    assert len(datakey) == keylen
    opened = app.ok("Decrypt", {"keyid": keyid, "ciphertext": out["result"]["ciphertext"], "aad": aad})
    assert unb64(opened["plaintext"]) == datakey
    assert app.call("Decrypt", {"keyid": keyid, "ciphertext": out["result"]["ciphertext"]}) == DECRYPTION_FAILED

    out = app.call("GenerateDataKeyWithoutPlaintext", {"keyid": keyid, "keylen": keylen})
    assert out["code"] == 200 and out["message"] == "success!", out
    assert list(out["result"]) == ["ciphertext"]
    opened = app.ok("Decrypt", {"keyid": keyid, "ciphertext": out["result"]["ciphertext"]})
    assert len(unb64(opened["plaintext"])) == keylen


@pytest.mark.parametrize("action", ["GenerateDataKey", "GenerateDataKeyWithoutPlaintext"])
@pytest.mark.parametrize(
    ("keylen", "expected"),
    [
        (0, invalid("keylen", "value must be greater than or equal to 1.")),
        (1025, invalid("keylen", "value must be less than or equal to 1024.")),
        ("16", invalid("keylen", "must be of integer type.")),
        (16.5, invalid("keylen", "must be of integer type.")),
        (True, invalid("keylen", "must be of integer type.")),
        (None, missing("keylen")),
    ],
    ids=["zero", "1025", "string", "fraction", "bool", "null"],
)
def test_data_key_length_rules(keyring: Keyring, action: str, keylen: Any, expected: dict[str, Any]) -> None:
    assert keyring.app.call(action, {"keyid": keyring["aes256"], "keylen": keylen}) == expected


# ------------------------------------------------------------------------------ ExportDataKey


@pytest.mark.parametrize("ukey", ["rsa2048", "rsa3072", "rsa4096", "sm2"])
@pytest.mark.parametrize("spelling", ["olddatakey_base", "olddatakey", "old_data_key"])
def test_export_data_key(keyring: Keyring, ukey: str, spelling: str) -> None:
    app = keyring.app
    aad = b64(b"export")
    made = app.ok("GenerateDataKey", {"keyid": keyring["aes256"], "keylen": 48, "aad": aad})
    payload = {"keyid": keyring["aes256"], "ukeyid": keyring[ukey], spelling: made["ciphertext"], "aad": aad}
    # The caller's padding is ignored: RSA always re-encrypts with OAEP-SHA-256 (contract 3.4).
    payload["padding_mode"] = "EH_RSA_PKCS1"
    out = app.call("ExportDataKey", payload)
    assert out["code"] == 200 and out["message"] == "success!", out
    assert list(out["result"]) == ["newdatakey"]
    newkey = out["result"]["newdatakey"]
    if ukey in RSA_ENC:
        assert len(unb64(newkey)) == RSA_ENC[ukey]
    opened = app.ok(
        "AsymmetricDecrypt", {"keyid": keyring[ukey], "ciphertext": newkey, "padding_mode": "EH_RSA_PKCS1_OAEP"}
    )
    assert opened["plaintext"] == made["plaintext"]


def test_export_data_key_failures(keyring: Keyring) -> None:
    app = keyring.app
    aad = b64(b"export")
    old = app.ok("GenerateDataKeyWithoutPlaintext", {"keyid": keyring["aes256"], "keylen": 32, "aad": aad})
    base = {"keyid": keyring["aes256"], "ukeyid": keyring["rsa2048"], "olddatakey_base": old["ciphertext"]}
    assert app.call("ExportDataKey", {**base, "aad": b64(b"wrong")}) == DATAKEY_FAILED
    assert app.call("ExportDataKey", base) == DATAKEY_FAILED  # aad left out
    for ukey in ("rsa2048s", "sm2s", "p256", "aes128", "hmac"):
        assert app.call("ExportDataKey", {**base, "aad": aad, "ukeyid": keyring[ukey]}) == SERVER_EXCEPTION, ukey
    assert app.call("ExportDataKey", {**base, "aad": aad, "keyid": keyring["rsa2048"]}) == SERVER_EXCEPTION
    from tests.e2e import unknown_keyid

    assert app.call("ExportDataKey", {**base, "aad": aad, "ukeyid": unknown_keyid()}) == KEYID_ERROR
    no_ukey = {k: v for k, v in base.items() if k != "ukeyid"}
    assert app.call("ExportDataKey", no_ukey) == missing("ukeyid")
    no_old = {k: v for k, v in base.items() if k != "olddatakey_base"}
    assert app.call("ExportDataKey", no_old) == missing("olddatakey_base")


# ------------------------------------------------------------------------------ AsymmetricEncrypt / Decrypt

RSA_PADDINGS = {"EH_RSA_PKCS1": 11, "EH_RSA_PKCS1_OAEP": 66}


def _local_padding(name: str) -> padding.AsymmetricPadding:
    if name == "EH_RSA_PKCS1":
        return padding.PKCS1v15()
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


@pytest.mark.parametrize("name", list(RSA_ENC))
@pytest.mark.parametrize("pad", list(RSA_PADDINGS))
def test_rsa_encrypt_decrypt(keyring: Keyring, name: str, pad: str) -> None:
    app, keyid, k = keyring.app, keyring[name], RSA_ENC[name]
    largest = k - RSA_PADDINGS[pad]
    for size in (1, largest):
        plaintext = bytes([7]) * size
        out = app.call("AsymmetricEncrypt", {"keyid": keyid, "plaintext": b64(plaintext), "padding_mode": pad})
        assert out["code"] == 200 and out["message"] == "success!", out
        assert list(out["result"]) == ["ciphertext"]
        assert len(unb64(out["result"]["ciphertext"])) == k
        back = {"keyid": keyid, "ciphertext": out["result"]["ciphertext"], "padding_mode": pad}
        assert app.call("AsymmetricDecrypt", back) == {
            "code": 200,
            "message": "success!",
            "result": {"plaintext": b64(plaintext)},
        }
    too_long = {"keyid": keyid, "plaintext": b64(b"\x07" * (largest + 1)), "padding_mode": pad}
    assert app.call("AsymmetricEncrypt", too_long) == SERVER_EXCEPTION
    # A ciphertext made here, with the parameters the contract names, opens on the server.
    pub = public_key(app, keyid)
    assert isinstance(pub, rsa.RSAPublicKey) and pub.key_size == 8 * k
    local = pub.encrypt(b"made by the client", _local_padding(pad))
    opened = app.ok("AsymmetricDecrypt", {"keyid": keyid, "ciphertext": b64(local), "padding_mode": pad})
    assert unb64(opened["plaintext"]) == b"made by the client"


def test_rsa_encryption_failures(keyring: Keyring) -> None:
    app, keyid = keyring.app, keyring["rsa2048"]
    for pad in ("EH_PAD_NONE", "EH_RSA_PKCS1_PSS"):
        payload = {"keyid": keyid, "plaintext": b64(b"x"), "padding_mode": pad}
        assert app.call("AsymmetricEncrypt", payload) == SERVER_EXCEPTION, pad
    ct = unb64(
        app.ok("AsymmetricEncrypt", {"keyid": keyid, "plaintext": b64(b"x"), "padding_mode": "EH_RSA_PKCS1_OAEP"})[
            "ciphertext"
        ]
    )
    corrupt = bytes([ct[0] ^ 0x80]) + ct[1:]
    for data, pad in ((corrupt, "EH_RSA_PKCS1_OAEP"), (ct[:-1], "EH_RSA_PKCS1_OAEP"), (ct, "EH_PAD_NONE")):
        payload = {"keyid": keyid, "ciphertext": b64(data), "padding_mode": pad}
        assert app.call("AsymmetricDecrypt", payload) == SERVER_EXCEPTION
    for name in ("rsa2048s", "aes256", "p256e", "hmac"):
        payload = {"keyid": keyring[name], "plaintext": b64(b"x"), "padding_mode": "EH_RSA_PKCS1_OAEP"}
        assert app.call("AsymmetricEncrypt", payload) == SERVER_EXCEPTION, name
    assert app.call("AsymmetricEncrypt", {"keyid": keyid, "plaintext": b64(b"x")}) == missing("padding_mode")
    assert app.call("AsymmetricEncrypt", {"keyid": keyid, "plaintext": b64(b"x"), "padding_mode": "EH_PAD_PKCS1"}) == (
        invalid("padding_mode", "type is incorrect.")
    )


@pytest.mark.parametrize("pad", ["EH_PAD_NONE", "EH_RSA_PKCS1", "EH_RSA_PKCS1_OAEP", "EH_RSA_PKCS1_PSS"])
def test_sm2_encrypt_decrypt(keyring: Keyring, pad: str) -> None:
    """The padding is ignored for SM2 but must be a valid name."""
    app, keyid = keyring.app, keyring["sm2"]
    for size in (1, 255):
        plaintext = bytes(range(size))
        ct = app.ok("AsymmetricEncrypt", {"keyid": keyid, "plaintext": b64(plaintext), "padding_mode": pad})[
            "ciphertext"
        ]
        assert unb64(ct)[0] == 0x30  # DER SEQUENCE{x, y, C3, C2}
        opened = app.ok("AsymmetricDecrypt", {"keyid": keyid, "ciphertext": ct, "padding_mode": "EH_PAD_NONE"})
        assert opened == {"plaintext": b64(plaintext)}


def test_sm2_encryption_failures(keyring: Keyring) -> None:
    app, keyid = keyring.app, keyring["sm2"]
    payload = {"keyid": keyid, "plaintext": b64(b"x" * 256), "padding_mode": "EH_PAD_NONE"}
    assert app.call("AsymmetricEncrypt", payload) == SERVER_EXCEPTION
    ct = unb64(app.ok("AsymmetricEncrypt", {**payload, "plaintext": b64(b"y" * 40)})["ciphertext"])
    for i in (len(ct) - 1, len(ct) - 45, 10):
        changed = ct[:i] + bytes([ct[i] ^ 0x01]) + ct[i + 1 :]
        back = {"keyid": keyid, "ciphertext": b64(changed), "padding_mode": "EH_PAD_NONE"}
        assert app.call("AsymmetricDecrypt", back) == SERVER_EXCEPTION, i
    sign_key = {"keyid": keyring["sm2s"], "plaintext": b64(b"x"), "padding_mode": "EH_PAD_NONE"}
    assert app.call("AsymmetricEncrypt", sign_key) == SERVER_EXCEPTION


# ------------------------------------------------------------------------------ Sign / Verify


def _sign_payload(keyid: str, message: bytes, mtype: str, digest: str, pad: str) -> dict[str, Any]:
    return {"keyid": keyid, "message": b64(message), "message_type": mtype, "digest_mode": digest, "padding_mode": pad}


def _verify(app: App, payload: dict[str, Any], sig: str) -> dict[str, Any]:
    return app.call("Verify", {**payload, "signature": sig})


# Every padding x digest x message type on RSA-2048; both paddings with two of them on the larger keys.
RSA_SIGN_CASES = [
    ("rsa2048s", pad, digest, mtype)
    for pad in ("EH_RSA_PKCS1", "EH_RSA_PKCS1_PSS")
    for digest in DIGESTS
    for mtype in ("EH_RAW", "EH_DIGEST")
] + [
    (name, pad, digest, mtype)
    for name in ("rsa3072s", "rsa4096s")
    for pad in ("EH_RSA_PKCS1", "EH_RSA_PKCS1_PSS")
    for digest, mtype in (("EH_SHA_256", "EH_RAW"), ("EH_SHA_512", "EH_DIGEST"))
]


@pytest.mark.parametrize(("name", "pad", "digest", "mtype"), RSA_SIGN_CASES)
def test_rsa_sign_verify(keyring: Keyring, name: str, pad: str, digest: str, mtype: str) -> None:
    app, keyid = keyring.app, keyring[name]
    message = MESSAGE if mtype == "EH_RAW" else digest_of(digest, MESSAGE)
    payload = _sign_payload(keyid, message, mtype, digest, pad)
    out = app.call("Sign", payload)
    assert out["code"] == 200 and out["message"] == "success!", out
    assert list(out["result"]) == ["signature"]
    sig = unb64(out["result"]["signature"])
    assert len(sig) == RSA_SIGN[name]
    assert _verify(app, payload, b64(sig)) == {"code": 200, "message": "success!", "result": {"result": True}}
    # Checked here too, with the parameters of the contract (PSS: MGF1 of the digest, salt = digest length).
    pub = public_key(app, keyid)
    algorithm = DIGESTS[digest]()
    scheme = (
        padding.PKCS1v15()
        if pad == "EH_RSA_PKCS1"
        else padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
    )
    pub.verify(sig, digest_of(digest, MESSAGE), scheme, Prehashed(algorithm))
    # A changed message or signature verifies false (a JSON bool, not an error).
    other = _sign_payload(keyid, b"other" if mtype == "EH_RAW" else digest_of(digest, b"other"), mtype, digest, pad)
    assert _verify(app, other, b64(sig)) == {"code": 200, "message": "success!", "result": {"result": False}}
    flipped = sig[:-1] + bytes([sig[-1] ^ 1])
    assert app.ok("Verify", {**payload, "signature": b64(flipped)}) == {"result": False}


def test_rsa_signature_failures(keyring: Keyring) -> None:
    app, keyid = keyring.app, keyring["rsa2048s"]
    for pad in ("EH_PAD_NONE", "EH_RSA_PKCS1_OAEP"):
        assert app.call("Sign", _sign_payload(keyid, MESSAGE, "EH_RAW", "EH_SHA_256", pad)) == SERVER_EXCEPTION, pad
    # EH_DIGEST input must be exactly the digest's size.
    for digest, size in (("EH_SHA_256", 31), ("EH_SHA_256", 33), ("EH_SHA_512", 32), ("EH_SHA_224", 32)):
        payload = _sign_payload(keyid, b"d" * size, "EH_DIGEST", digest, "EH_RSA_PKCS1")
        assert app.call("Sign", payload) == SERVER_EXCEPTION, (digest, size)
    payload = _sign_payload(keyid, MESSAGE, "EH_RAW", "EH_SHA_256", "EH_RSA_PKCS1")
    sig = unb64(app.ok("Sign", payload)["signature"])
    # A signature that is not exactly k bytes is an error, not false (as the original).
    assert _verify(app, payload, b64(sig[:-1])) == SERVER_EXCEPTION
    assert _verify(app, payload, b64(sig + b"\x00")) == SERVER_EXCEPTION
    assert _verify(app, payload, b64(b"s" * 513)) == SERVER_EXCEPTION
    # Usage: an ENCRYPT_DECRYPT key does not sign.
    assert app.call("Sign", _sign_payload(keyring["rsa2048"], MESSAGE, "EH_RAW", "EH_SHA_256", "EH_RSA_PKCS1")) == (
        SERVER_EXCEPTION
    )
    for name in ("aes256", "hmac", "p256e", "sm2"):
        assert app.call("Sign", _sign_payload(keyring[name], MESSAGE, "EH_RAW", "EH_SHA_256", "EH_RSA_PKCS1")) == (
            SERVER_EXCEPTION
        ), name


def test_sign_message_limits_and_rules(keyring: Keyring) -> None:
    app, keyid = keyring.app, keyring["p256"]
    big = _sign_payload(keyid, b"m" * 6144, "EH_RAW", "EH_SHA_256", "EH_PAD_NONE")
    sig = app.ok("Sign", big)["signature"]
    assert app.ok("Verify", {**big, "signature": sig}) == {"result": True}
    too_big = _sign_payload(keyid, b"m" * 6145, "EH_RAW", "EH_SHA_256", "EH_PAD_NONE")
    assert app.call("Sign", too_big) == invalid("message", "length error.")
    for field in ("message_type", "digest_mode", "padding_mode"):
        partial = {k: v for k, v in big.items() if k != field}
        assert app.call("Sign", partial) == missing(field), field
    assert app.call("Sign", {**big, "message_type": "EH_HASH"}) == invalid("message_type", "type is incorrect.")
    assert app.call("Sign", {**big, "digest_mode": "EH_SHA_1"}) == invalid("digest_mode", "type is incorrect.")
    assert app.call("Verify", big) == missing("signature")
    assert app.call("Verify", {**big, "signature": "not base64"}) == invalid("signature", "not a vailed base64 string.")


@pytest.mark.parametrize("name", list(EC_SIGN))
@pytest.mark.parametrize("digest", list(DIGESTS))
@pytest.mark.parametrize("mtype", ["EH_RAW", "EH_DIGEST"])
def test_ecdsa_sign_verify(keyring: Keyring, name: str, digest: str, mtype: str) -> None:
    """Padding is ignored for EC (any valid name); the signature is DER and verifies here."""
    app, keyid = keyring.app, keyring[name]
    message = MESSAGE if mtype == "EH_RAW" else digest_of(digest, MESSAGE)
    payload = _sign_payload(keyid, message, mtype, digest, "EH_RSA_PKCS1_PSS" if mtype == "EH_RAW" else "EH_PAD_NONE")
    sig = unb64(app.ok("Sign", payload)["signature"])
    assert sig[0] == 0x30
    assert _verify(app, payload, b64(sig)) == {"code": 200, "message": "success!", "result": {"result": True}}
    pub = public_key(app, keyid)
    assert isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, EC_SIGN[name])
    algorithm = DIGESTS[digest]()
    pub.verify(sig, digest_of(digest, MESSAGE), ec.ECDSA(Prehashed(algorithm)))
    with pytest.raises(InvalidSignature):
        pub.verify(sig, digest_of(digest, b"other"), ec.ECDSA(Prehashed(algorithm)))
    other = {**payload, "message": b64(b"other" if mtype == "EH_RAW" else digest_of(digest, b"other"))}
    assert app.ok("Verify", {**other, "signature": b64(sig)}) == {"result": False}
    # A malformed DER signature is simply not valid.
    assert app.ok("Verify", {**payload, "signature": b64(b"\x30\x02\x01\x01")}) == {"result": False}


def test_ecdsa_failures(keyring: Keyring) -> None:
    app = keyring.app
    wrong_size = _sign_payload(keyring["p256"], b"d" * 31, "EH_DIGEST", "EH_SHA_256", "EH_PAD_NONE")
    assert app.call("Sign", wrong_size) == SERVER_EXCEPTION
    enc_usage = _sign_payload(keyring["p256e"], MESSAGE, "EH_RAW", "EH_SHA_256", "EH_PAD_NONE")
    assert app.call("Sign", enc_usage) == SERVER_EXCEPTION
    # An EC ENCRYPT_DECRYPT key is accepted but only good for GetPublicKey (contract 4.2).
    assert isinstance(public_key(app, keyring["p256e"]), ec.EllipticCurvePublicKey)


@pytest.mark.parametrize("digest", list(DIGESTS))
@pytest.mark.parametrize("mtype", ["EH_RAW", "EH_DIGEST"])
def test_sm2_sign_verify(keyring: Keyring, digest: str, mtype: str) -> None:
    """SM2 signs SM3(Z || input) whatever digest is named; verifying needs EH_SM3; EH_DIGEST has no size rule."""
    app, keyid = keyring.app, keyring["sm2s"]
    message = MESSAGE if mtype == "EH_RAW" else b"any length at all"
    payload = _sign_payload(keyid, message, mtype, digest, "EH_PAD_NONE")
    sig = app.ok("Sign", payload)["signature"]
    assert unb64(sig)[0] == 0x30 and len(unb64(sig)) <= 72
    good = {**payload, "digest_mode": "EH_SM3", "signature": sig}
    assert app.call("Verify", good) == {"code": 200, "message": "success!", "result": {"result": True}}
    # EH_RAW and EH_DIGEST are the same computation for SM2.
    other_type = "EH_DIGEST" if mtype == "EH_RAW" else "EH_RAW"
    assert app.ok("Verify", {**good, "message_type": other_type}) == {"result": True}
    assert app.ok("Verify", {**good, "message": b64(b"changed")}) == {"result": False}
    if digest != "EH_SM3":
        assert app.call("Verify", {**good, "digest_mode": digest}) == SERVER_EXCEPTION


# ------------------------------------------------------------------------------ GetPublicKey


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("rsa2048", "RSA PUBLIC KEY"),
        ("rsa3072s", "RSA PUBLIC KEY"),
        ("rsa4096", "RSA PUBLIC KEY"),
        ("p224", "PUBLIC KEY"),
        ("p256e", "PUBLIC KEY"),
        ("p256k", "PUBLIC KEY"),
        ("p384", "PUBLIC KEY"),
        ("p521", "PUBLIC KEY"),
        ("sm2", "PUBLIC KEY"),
        ("sm2s", "PUBLIC KEY"),
    ],
)
def test_get_public_key(keyring: Keyring, name: str, header: str) -> None:
    app, keyid = keyring.app, keyring[name]
    raw = app.raw("GetPublicKey", {"keyid": keyid})
    # Node-built result: pubkey, then keyid (not sorted).
    assert raw.startswith('{"code":200,"message":"success!","result":{"pubkey":"-----BEGIN ' + header + "-----\\n")
    assert raw.endswith(f'-----END {header}-----\\n","keyid":"{keyid}"}}}}')
    out = app.call("GetPublicKey", {"keyid": keyid})
    pem = out["result"]["pubkey"]
    assert pem.startswith(f"-----BEGIN {header}-----\n") and pem.endswith(f"-----END {header}-----\n")
    assert out["result"]["keyid"] == keyid
    body = "".join(pem.splitlines()[1:-1])
    assert base64.b64decode(body, validate=True)
    if header == "RSA PUBLIC KEY":
        assert isinstance(serialization.load_pem_public_key(pem.encode()), rsa.RSAPublicKey)


@pytest.mark.parametrize("name", ["aes128", "sm4ctr", "hmac"])
def test_get_public_key_of_a_secret_key(keyring: Keyring, name: str) -> None:
    assert keyring.app.call("GetPublicKey", {"keyid": keyring[name]}) == SERVER_EXCEPTION


# ------------------------------------------------------------------------------ ours: MACs and random


@pytest.mark.parametrize(
    ("digest", "size"), [(None, 32), ("EH_SHA_256", 32), ("EH_SHA_384", 48), ("EH_SHA_512", 64), ("EH_SM3", 32)]
)
def test_generate_and_verify_mac(keyring: Keyring, digest: str | None, size: int) -> None:
    app, keyid = keyring.app, keyring["hmac"]
    payload: dict[str, Any] = {"keyid": keyid, "message": b64(MESSAGE)}
    if digest is not None:
        payload["digest_mode"] = digest
    out = app.call("GenerateMac", payload)
    assert out["code"] == 200 and out["message"] == "success!", out
    assert list(out["result"]) == ["mac"]
    mac = unb64(out["result"]["mac"])
    assert len(mac) == size
    assert app.ok("GenerateMac", payload) == out["result"]  # deterministic
    assert app.call("VerifyMac", {**payload, "mac": b64(mac)}) == {
        "code": 200,
        "message": "success!",
        "result": {"result": True},
    }
    for wrong in (mac[:-1] + bytes([mac[-1] ^ 1]), mac[:16], mac + b"\x00"):
        assert app.ok("VerifyMac", {**payload, "mac": b64(wrong)}) == {"result": False}
    assert app.ok("VerifyMac", {**payload, "message": b64(b"other"), "mac": b64(mac)}) == {"result": False}


def test_mac_failures(keyring: Keyring) -> None:
    app = keyring.app
    payload = {"keyid": keyring["hmac"], "message": b64(MESSAGE)}
    assert app.call("GenerateMac", {**payload, "digest_mode": "EH_SHA_224"}) == SERVER_EXCEPTION
    for name in ("aes256", "rsa2048s", "p256"):
        assert app.call("GenerateMac", {**payload, "keyid": keyring[name]}) == SERVER_EXCEPTION, name
    assert app.call("GenerateMac", {"keyid": keyring["hmac"]}) == missing("message")
    assert app.call("VerifyMac", payload) == missing("mac")
    hmac_sign = _sign_payload(keyring["hmac"], MESSAGE, "EH_RAW", "EH_SHA_256", "EH_PAD_NONE")
    assert app.call("Sign", hmac_sign) == SERVER_EXCEPTION


@pytest.mark.parametrize("length", [1, 32, 1024])
def test_generate_random(keyring: Keyring, length: int) -> None:
    app = keyring.app
    out = app.call("GenerateRandom", {"length": length})
    assert out["code"] == 200 and out["message"] == "success!", out
    assert list(out["result"]) == ["random"]
    assert len(unb64(out["result"]["random"])) == length
    if length >= 32:
        assert app.ok("GenerateRandom", {"length": length}) != out["result"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"length": 0}, invalid("length", "value must be greater than or equal to 1.")),
        ({"length": 1025}, invalid("length", "value must be less than or equal to 1024.")),
        ({"length": "8"}, invalid("length", "must be of integer type.")),
        ({}, missing("length")),
    ],
    ids=["zero", "1025", "string", "missing"],
)
def test_generate_random_rules(keyring: Keyring, payload: dict[str, Any], expected: dict[str, Any]) -> None:
    assert keyring.app.call("GenerateRandom", payload) == expected
