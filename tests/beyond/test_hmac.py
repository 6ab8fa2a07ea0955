"""HMAC keys (EH_HMAC): the Wycheproof HMAC-SHA-256/384/512 vectors through the core facade, and GenerateMac /
VerifyMac round trips and tampering over the wire.

Each vector's key becomes a CMK blob bound to an app, and the facade is called with that app's signed request,
as the service calls it. Two of our rules meet the vectors:

* only full-length tags are accepted, so a vector with a truncated tag checks that our tag starts with it and that
  VerifyMac refuses the truncated one (a verifier that took short tags would let a caller choose its odds);
* an empty message is refused by the facade (the wire cannot carry one: an empty field is "missing"), so those
  vectors check that refusal and are also run against the facade's MAC module itself.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ehsm_kms import errors
from ehsm_kms.core import mac
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.enclave import Enclave
from ehsm_kms.core.protocol import AppCredential, Call, KeyRef
from ehsm_kms.core.proxy import raise_reply
from ehsm_kms.core.specs import DigestMode, KeySpec, KeyUsage, Origin
from tests.e2e import App, b64, enclave_error, unb64
from tests.signing import signed
from tests.vectors import load_vectors

FILES = {
    "EH_SHA_256": ("wycheproof/hmac_sha256_test.json", 32),
    "EH_SHA_384": ("wycheproof/hmac_sha384_test.json", 48),
    "EH_SHA_512": ("wycheproof/hmac_sha512_test.json", 64),
}


class Facade:
    def __init__(self) -> None:
        self.enc = Enclave(DomainKeyRing.generate(), run_self_tests=False)
        made = raise_reply(self.enc.handle(Call(op="enroll")))
        self.appid, self.apikey = made["appid"], made["apikey"]
        self.cred = AppCredential(self.appid, made["apikey_blob"])
        self.n = 0

    def key(self, material: bytes) -> KeyRef:
        """A CMK holding ``material`` (as BYOK import would make it), bound to this app."""
        self.n += 1
        ref = KeyRef(
            f"00000000-0000-4000-8000-{self.n:012d}",
            self.appid,
            int(KeySpec.EH_HMAC),
            int(KeyUsage.EH_KEYUSAGE_SIGN_VERIFY),
            int(Origin.EH_EXTERNAL_KEY),
            1,
            b"",
        )
        return KeyRef(ref.keyid, ref.appid, ref.keyspec, ref.usage, ref.origin, 1, self.enc.wrap_cmk(ref, material))

    def call(self, op: str, ref: KeyRef, payload: dict[str, Any]) -> dict[str, Any]:
        req = signed(self.appid, self.apikey, {"keyid": ref.keyid, **payload})
        return raise_reply(self.enc.handle(Call(op=op, auth=req, app=self.cred, keys=[ref])))


@pytest.fixture(scope="module")
def facade() -> Facade:
    return Facade()


def _cases() -> list[Any]:
    out = []
    for digest, (path, full) in FILES.items():
        for group in load_vectors(path)["testGroups"]:
            for case in group["tests"]:
                out.append(pytest.param(digest, full, group["tagSize"] // 8, case, id=f"{digest}-{case['tcId']}"))
    return out


def test_every_vector_file_is_complete() -> None:
    for path, _ in FILES.values():
        data = load_vectors(path)
        assert sum(len(g["tests"]) for g in data["testGroups"]) == data["numberOfTests"] == 174


@pytest.mark.parametrize(("digest", "full", "tag_len", "case"), _cases())
def test_wycheproof_through_the_facade(facade: Facade, digest: str, full: int, tag_len: int, case: Any) -> None:
    key, msg, tag = bytes.fromhex(case["key"]), bytes.fromhex(case["msg"]), bytes.fromhex(case["tag"])
    valid = case["result"] == "valid"
    ref = facade.key(key)
    if not msg:
        with pytest.raises(errors.CryptoError):
            facade.call("generate_mac", ref, {"message": "", "digest_mode": digest})
        ours = mac.mac(key, DigestMode[digest], msg)
        assert (ours[:tag_len] == tag) is valid
        assert mac.verify(key, DigestMode[digest], msg, tag) is (valid and tag_len == full)
        return
    made = unb64(facade.call("generate_mac", ref, {"message": b64(msg), "digest_mode": digest})["mac"])
    assert len(made) == full
    assert (made[:tag_len] == tag) is valid
    verdict = facade.call("verify_mac", ref, {"message": b64(msg), "digest_mode": digest, "mac": b64(tag)})
    assert verdict == {"result": valid and tag_len == full}


# ------------------------------------------------------------------------------------------ over the wire
@pytest.mark.parametrize("digest", [None, "EH_SHA_256", "EH_SHA_384", "EH_SHA_512", "EH_SM3"])
def test_generate_and_verify_mac_round_trip(app: App, digest: str | None) -> None:
    keyid = app.create_key("EH_HMAC", "SIGN_VERIFY")
    payload: dict[str, Any] = {"keyid": keyid, "message": b64(b"amount=100&to=alice")}
    if digest:
        payload["digest_mode"] = digest
    tag = app.ok("GenerateMac", payload)["mac"]
    assert len(unb64(tag)) == {None: 32, "EH_SHA_256": 32, "EH_SHA_384": 48, "EH_SHA_512": 64, "EH_SM3": 32}[digest]
    assert app.ok("GenerateMac", payload)["mac"] == tag  # deterministic
    assert app.ok("VerifyMac", {**payload, "mac": tag}) == {"result": True}


def test_mac_tampering_is_refused(app: App, other_app: App) -> None:
    keyid = app.create_key("EH_HMAC", "SIGN_VERIFY")
    message = b"amount=100&to=alice"
    base = {"keyid": keyid, "message": b64(message)}
    tag = unb64(app.ok("GenerateMac", base)["mac"])
    for i in range(len(tag)):  # every byte of the tag
        changed = tag[:i] + bytes([tag[i] ^ 0x80]) + tag[i + 1 :]
        assert app.ok("VerifyMac", {**base, "mac": b64(changed)}) == {"result": False}
    for wrong in (tag[:16], tag + b"\x00"):  # truncated, extended
        assert app.ok("VerifyMac", {**base, "mac": b64(wrong)}) == {"result": False}
    assert app.ok("VerifyMac", {**base, "message": b64(b"amount=900&to=alice"), "mac": b64(tag)}) == {"result": False}
    assert app.ok("VerifyMac", {**base, "digest_mode": "EH_SHA_512", "mac": b64(tag)}) == {"result": False}
    # Another key of the same kind does not verify it; another app cannot use the key at all.
    second = app.create_key("EH_HMAC", "SIGN_VERIFY")
    assert app.ok("VerifyMac", {**base, "keyid": second, "mac": b64(tag)}) == {"result": False}
    assert other_app.call("VerifyMac", {**base, "mac": b64(tag)})["message"] == "keyid error"
    # An HMAC key does not encrypt, and an AES key does not MAC.
    assert app.call("Encrypt", {"keyid": keyid, "plaintext": b64(b"x")}) == enclave_error(500, "Server exception.")
    aes = app.create_key("EH_AES_GCM_256")
    assert app.call("GenerateMac", {**base, "keyid": aes}) == enclave_error(500, "Server exception.")


def test_hmac_keys_rotate_and_old_tags_verify_with_their_version(app: App) -> None:
    keyid = app.create_key("EH_HMAC", "SIGN_VERIFY")
    base = {"keyid": keyid, "message": base64.b64encode(b"m").decode()}
    old = app.ok("GenerateMac", base)["mac"]
    app.ok("RotateKey", {"keyid": keyid})
    new = app.ok("GenerateMac", base)["mac"]
    assert new != old
    assert app.ok("VerifyMac", {**base, "mac": new}) == {"result": True}
    assert app.ok("VerifyMac", {**base, "mac": old}) == {"result": False}
    assert app.ok("VerifyMac", {**base, "mac": old, "keyversion": 1}) == {"result": True}
    assert app.ok("VerifyMac", {**base, "mac": new, "keyversion": 1}) == {"result": False}
