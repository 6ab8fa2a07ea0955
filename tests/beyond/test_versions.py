"""Key versions over the wire: RotateKey, ListKeyVersions, SetMinDecryptVersion, UpdateKeyRotation, ReEncrypt,
and which version Encrypt, GenerateDataKey, Decrypt, Sign and Verify use."""

from __future__ import annotations

import struct

from tests.e2e import DECRYPTION_FAILED, KEYID_ERROR, App, b64, node_error, unb64

RETIRED = node_error(400, "key version retired: the key version is below the key's minDecryptVersion")
SUCCESSFUL = "successful"


def version_of(ciphertext: str) -> int:
    """The key version in our ciphertext header (docs/formats.md: format id, then the version as a u32)."""
    return int(struct.unpack(">BI", unb64(ciphertext)[:5])[1])


def encrypt(app: App, keyid: str, text: bytes, aad: bytes = b"ctx") -> str:
    ct: str = app.ok("Encrypt", {"keyid": keyid, "plaintext": b64(text), "aad": b64(aad)})["ciphertext"]
    return ct


def decrypt(app: App, keyid: str, ct: str, aad: bytes = b"ctx") -> dict[str, object]:
    return app.call("Decrypt", {"keyid": keyid, "ciphertext": ct, "aad": b64(aad)})


def test_rotation_keeps_old_ciphertexts_and_names_the_new_version(app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256")
    before = encrypt(app, keyid, b"made before the rotation")
    assert version_of(before) == 1
    out = app.call("RotateKey", {"keyid": keyid})
    assert out == {"code": 200, "message": SUCCESSFUL, "result": {"keyid": keyid, "keyversion": 2}}
    after = encrypt(app, keyid, b"made after")
    assert version_of(after) == 2
    assert decrypt(app, keyid, before)["result"] == {"plaintext": b64(b"made before the rotation")}
    assert decrypt(app, keyid, after)["result"] == {"plaintext": b64(b"made after")}
    datakey = app.ok("GenerateDataKey", {"keyid": keyid, "keylen": 32})
    assert version_of(datakey["ciphertext"]) == 2
    assert app.ok("Decrypt", {"keyid": keyid, "ciphertext": datakey["ciphertext"]})["plaintext"] == datakey["plaintext"]

    listing = app.ok("ListKeyVersions", {"keyid": keyid})
    assert listing["primaryVersion"] == 2 and listing["minDecryptVersion"] == 1
    shown = [(v["keyversion"], v["primary"], v["retired"]) for v in listing["list"]]
    assert shown == [(1, False, False), (2, True, False)]
    described = app.ok("DescribeKey", {"keyid": keyid})
    assert described["versions"] == [1, 2] and described["primaryVersion"] == 2
    # A header naming a version the key does not have is a failed decryption like any other.
    forged = b64(unb64(after)[:1] + struct.pack(">I", 9) + unb64(after)[5:])
    assert decrypt(app, keyid, forged) == DECRYPTION_FAILED


def test_min_decrypt_version_retires_old_ciphertexts_with_a_clear_error(app: App) -> None:
    keyid = app.create_key("EH_SM4_CBC")
    v1 = encrypt(app, keyid, b"old")
    app.ok("RotateKey", {"keyid": keyid})
    v2 = encrypt(app, keyid, b"new")
    out = app.call("SetMinDecryptVersion", {"keyid": keyid, "minDecryptVersion": 2})
    assert out == {"code": 200, "message": SUCCESSFUL, "result": {"keyid": keyid, "minDecryptVersion": 2}}
    assert decrypt(app, keyid, v1) == RETIRED
    assert app.call("ReEncrypt", {"keyid": keyid, "ciphertext": v1, "aad": b64(b"ctx")}) == RETIRED
    assert decrypt(app, keyid, v2)["code"] == 200
    versions = app.ok("ListKeyVersions", {"keyid": keyid})["list"]
    assert [v["retired"] for v in versions] == [True, False]
    # Not above the primary; lowering it again brings the old version back (versions are never deleted).
    above = app.call("SetMinDecryptVersion", {"keyid": keyid, "minDecryptVersion": 3})
    assert above == node_error(400, "minDecryptVersion must not be above the key's primary version")
    app.ok("SetMinDecryptVersion", {"keyid": keyid, "minDecryptVersion": 1})
    assert decrypt(app, keyid, v1)["result"] == {"plaintext": b64(b"old")}


def test_reencrypt_moves_data_to_the_primary_without_the_plaintext(app: App, other_app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_128")
    old = encrypt(app, keyid, b"payroll")
    app.ok("RotateKey", {"keyid": keyid})
    app.ok("RotateKey", {"keyid": keyid})
    out = app.call("ReEncrypt", {"keyid": keyid, "ciphertext": old, "aad": b64(b"ctx")})
    assert out["code"] == 200 and out["message"] == "success!"
    result = out["result"]
    assert list(result) == ["ciphertext", "keyid", "keyversion"]  # no plaintext, enclave-style sorted keys
    assert result["keyid"] == keyid and result["keyversion"] == 3
    assert version_of(result["ciphertext"]) == 3
    assert b64(b"payroll") not in str(out)
    assert decrypt(app, keyid, result["ciphertext"])["result"] == {"plaintext": b64(b"payroll")}

    # Under another key of the app, with another aad.
    other = app.create_key("EH_SM4_CTR")
    payload = {
        "keyid": keyid,
        "ciphertext": old,
        "aad": b64(b"ctx"),
        "destination_keyid": other,
        "destination_aad": b64(b"new ctx"),
    }
    moved = app.ok("ReEncrypt", payload)
    assert moved["keyid"] == other and moved["keyversion"] == 1
    assert decrypt(app, other, moved["ciphertext"], b"new ctx")["result"] == {"plaintext": b64(b"payroll")}
    # Wrong aad: one error, as Decrypt. Another app's key as destination: an unknown key.
    assert app.call("ReEncrypt", {"keyid": keyid, "ciphertext": old, "aad": b64(b"no")}) == DECRYPTION_FAILED
    foreign = other_app.create_key("EH_AES_GCM_256")
    assert app.call("ReEncrypt", {**payload, "destination_keyid": foreign}) == KEYID_ERROR


def test_sign_uses_the_primary_and_verify_any_named_version(app: App) -> None:
    keyid = app.create_key("EH_EC_P256", "SIGN_VERIFY")
    msg = {"keyid": keyid, "message": b64(b"contract"), "message_type": "EH_RAW", "digest_mode": "EH_SHA_256",
           "padding_mode": "EH_PAD_NONE"}  # fmt: skip
    old = app.ok("Sign", msg)["signature"]
    app.ok("RotateKey", {"keyid": keyid})
    new = app.ok("Sign", msg)["signature"]
    assert app.ok("Verify", {**msg, "signature": new}) == {"result": True}
    assert app.ok("Verify", {**msg, "signature": old}) == {"result": False}  # the primary is version 2 now
    assert app.ok("Verify", {**msg, "signature": old, "keyversion": 1}) == {"result": True}
    assert app.ok("Verify", {**msg, "signature": new, "keyversion": 1}) == {"result": False}
    assert app.call("Verify", {**msg, "signature": old, "keyversion": 7}) == node_error(400, "keyversion error")
    app.ok("SetMinDecryptVersion", {"keyid": keyid, "minDecryptVersion": 2})
    assert app.call("Verify", {**msg, "signature": old, "keyversion": 1}) == RETIRED
    # The public key follows the primary.
    assert app.ok("GetPublicKey", {"keyid": keyid})["pubkey"].startswith("-----BEGIN PUBLIC KEY-----")


def test_rotation_settings_and_refusals(app: App, other_app: App) -> None:
    keyid = app.create_key("EH_AES_GCM_256")
    made = app.ok("UpdateKeyRotation", {"keyid": keyid, "rotationPeriod": 90})
    assert made["rotationPeriod"] == 90 and made["nextRotationDate"] > 0
    described = app.ok("DescribeKey", {"keyid": keyid})
    assert described["rotationPeriod"] == 90 and described["nextRotationDate"] == made["nextRotationDate"]
    assert app.ok("UpdateKeyRotation", {"keyid": keyid, "rotationPeriod": 0})["nextRotationDate"] == 0
    too_long = app.call("UpdateKeyRotation", {"keyid": keyid, "rotationPeriod": 3651})
    assert too_long["message"] == "Parameter invalid, The rotationPeriod value must be less than or equal to 3650."
    # An external (BYOK) key gets new material only by import: it is not rotated.
    external = app.create_key("EH_AES_GCM_256", origin="EXTERNAL")
    refused = node_error(400, "an external key cannot be rotated")
    assert app.call("RotateKey", {"keyid": external}) == refused
    assert app.call("UpdateKeyRotation", {"keyid": external, "rotationPeriod": 30}) == refused
    # Another app's key, and a disabled key, are refused as for any use.
    assert other_app.call("RotateKey", {"keyid": keyid}) == KEYID_ERROR
    app.ok("DisableKey", {"keyid": keyid})
    assert app.call("RotateKey", {"keyid": keyid}) == node_error(400, "keyid is disabled")
    assert app.call("SetMinDecryptVersion", {"keyid": keyid}) == node_error(
        400, "Missing required parameters, The minDecryptVersion cannot be empty."
    )
