"""The core's secret operations (in-process Enclave): it authorizes instead of obeying.

The outer layer hands the core a key, the server's values (secret id, version) and a stored ciphertext; the core
takes the name and the value from the signed payload, checks the key belongs to the caller and can seal, and binds
the value to its place, so a compromised outer layer can neither read one app's secret for another nor make a
value open somewhere else.
"""

from __future__ import annotations

import contextlib
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ehsm_kms import errors
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.enclave import Enclave
from ehsm_kms.core.ops_secrets import secret_aad
from ehsm_kms.core.protocol import AppCredential, Call, KeyRef
from ehsm_kms.core.proxy import raise_reply
from ehsm_kms.core.specs import KeySpec, KeyUsage, Origin
from tests.signing import signed

ED, SV = "EH_KEYUSAGE_ENCRYPT_DECRYPT", "EH_KEYUSAGE_SIGN_VERIFY"
CMK_NOT_FOUND = "Cannot find cmk by keyid."
WRONG_KEY = "Wrong parameter, please check your encryptionKeyId."


@contextlib.contextmanager
def refused(message: str) -> Iterator[None]:
    """The core refuses with exactly the contract's message (a 400 with ``"result": {}``)."""
    with pytest.raises(errors.BadRequest) as caught:
        yield
    assert caught.value.message == message
    assert caught.value.envelope() == {"code": 400, "message": message, "result": {}}


@dataclass
class CoreApp:
    enc: Enclave
    appid: str
    apikey: str
    cred: AppCredential

    def call(self, op: str, payload: dict[str, Any], keys: list[KeyRef] | None = None, **args: Any) -> Any:
        req = signed(self.appid, self.apikey, payload)
        return raise_reply(self.enc.handle(Call(op=op, auth=req, app=self.cred, keys=keys or [], args=args)))

    def key(self, spec: str, usage: str = ED, origin: str = "EH_INTERNAL_KEY") -> KeyRef:
        keyid = str(uuid.uuid4())
        made = self.call("create_key", {"keyspec": spec, "keyusage": usage, "origin": origin}, keyid=keyid, version=1)
        return KeyRef(keyid, self.appid, int(KeySpec[spec]), int(KeyUsage[usage]), int(Origin[origin]), 1, made["blob"])

    def default_key(self) -> bytes:
        blob: bytes = self.call("make_secret_key", {})["blob"]
        return blob


@pytest.fixture(scope="module")
def enclave() -> Enclave:
    return Enclave(DomainKeyRing.generate(), run_self_tests=False)


def enroll(enc: Enclave) -> CoreApp:
    made = raise_reply(enc.handle(Call(op="enroll")))
    return CoreApp(enc, made["appid"], made["apikey"], AppCredential(made["appid"], made["apikey_blob"]))


@pytest.fixture
def me(enclave: Enclave) -> CoreApp:
    return enroll(enclave)


@pytest.fixture
def them(enclave: Enclave) -> CoreApp:
    return enroll(enclave)


def seal(
    app: CoreApp, name: str, data: str, version: int, sid: str, keys: list[KeyRef] | None = None, **args: Any
) -> bytes:
    payload: dict[str, Any] = {"secretName": name, "secretData": data}
    if keys and version == 1:
        payload["encryptionKeyId"] = keys[0].keyid
    sealed: bytes = app.call("seal_secret", payload, keys, secret_id=sid, version=version, **args)["ciphertext"]
    return sealed


def open_(
    app: CoreApp, name: str, sealed: bytes, version: int, sid: str, keys: list[KeyRef] | None = None, **args: Any
) -> str:
    payload = {"secretName": name}
    out = app.call("open_secret", payload, keys, secret_id=sid, version=version, ciphertext=sealed, **args)
    data: str = out["secretData"]
    return data


def test_associated_data_encoding_is_pinned() -> None:
    aad = secret_aad("app", "sid", "n☃", 7)
    name = "n☃".encode()
    expected = b"ehsm-kms secret v1" + struct.pack(">I", 3) + b"app" + struct.pack(">I", 3) + b"sid"
    expected += struct.pack(">I", len(name)) + name + struct.pack(">I", 7)
    assert aad == expected
    with pytest.raises(errors.CryptoError):
        secret_aad("app", "sid", "n", 2**32)


@pytest.mark.parametrize("spec", [None, "EH_AES_GCM_128", "EH_AES_GCM_256", "EH_SM4_CTR", "EH_SM4_CBC"])
def test_round_trip_and_binding(me: CoreApp, spec: str | None) -> None:
    keys = [me.key(spec)] if spec else []
    args = {} if spec else {"default_key": me.default_key()}
    sid = str(uuid.uuid4())
    data = "p@ss&w=rd%20\t\n😀" * 100
    sealed = seal(me, "db", data, 1, sid, keys, **args)
    assert data.encode() not in sealed
    assert open_(me, "db", sealed, 1, sid, keys, **args) == data
    for name, version, other_sid in (("db2", 1, sid), ("db", 2, sid), ("db", 1, str(uuid.uuid4()))):
        with pytest.raises(errors.DecryptionFailed):
            open_(me, name, sealed, version, other_sid, keys, **args)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(errors.DecryptionFailed):
        open_(me, "db", bytes(tampered), 1, sid, keys, **args)


def test_the_signed_version_must_be_the_one_given(me: CoreApp) -> None:
    args = {"default_key": me.default_key()}
    sid = str(uuid.uuid4())
    sealed = seal(me, "db", "v2", 2, sid, **args)
    req = {"secretName": "db", "versionId": 2}
    out = me.call("open_secret", req, secret_id=sid, version=2, ciphertext=sealed, **args)
    assert out == {"secretData": "v2"}
    with pytest.raises(errors.DecryptionFailed):
        me.call(
            "open_secret", {"secretName": "db", "versionId": 3}, secret_id=sid, version=2, ciphertext=sealed, **args
        )


def test_another_apps_keys_are_refused(me: CoreApp, them: CoreApp) -> None:
    their_key = them.key("EH_AES_GCM_256")
    with refused(CMK_NOT_FOUND):
        seal(me, "db", "x", 1, "sid", [their_key])
    # Their default key, given as mine, does not open: it is bound to their app.
    with pytest.raises(errors.CryptoError):
        seal(me, "db", "x", 1, "sid", default_key=them.default_key())
    # Their value, given with my credentials and their key, does not open either.
    args = {"default_key": them.default_key()}
    sealed = seal(them, "db", "theirs", 1, "sid", **args)
    with pytest.raises(errors.CryptoError):
        open_(me, "db", sealed, 1, "sid", **args)


def test_the_key_must_be_the_one_the_payload_chose(me: CoreApp) -> None:
    chosen, other = me.key("EH_AES_GCM_256"), me.key("EH_AES_GCM_256")
    payload = {"secretName": "db", "secretData": "x", "encryptionKeyId": chosen.keyid}
    with refused(CMK_NOT_FOUND):
        me.call("seal_secret", payload, [other], secret_id="sid", version=1)
    with refused(CMK_NOT_FOUND):  # chose one, was given none
        me.call("seal_secret", payload, secret_id="sid", version=1, default_key=me.default_key())
    assert me.call("seal_secret", payload, [chosen], secret_id="sid", version=1)["ciphertext"]


@pytest.mark.parametrize(
    ("spec", "usage", "origin"),
    [
        ("EH_EC_P256", ED, "EH_INTERNAL_KEY"),
        ("EH_SM2", ED, "EH_INTERNAL_KEY"),
        ("EH_EC_P256", SV, "EH_INTERNAL_KEY"),
        ("EH_HMAC", SV, "EH_INTERNAL_KEY"),
        ("EH_AES_GCM_256", ED, "EH_EXTERNAL_KEY"),  # never imported: no material
    ],
)
def test_keys_that_cannot_seal_are_refused(me: CoreApp, spec: str, usage: str, origin: str) -> None:
    key = me.key(spec, usage, origin)
    with refused(WRONG_KEY):
        seal(me, "db", "x", 1, "sid", [key])
    # A row whose metadata claims a symmetric key does not fool the core: its blob is bound to what it is.
    if key.blob:
        forged = KeyRef(key.keyid, key.appid, int(KeySpec.EH_AES_GCM_256), int(KeyUsage[ED]), 1, 1, key.blob)
        with pytest.raises(errors.CryptoError):
            seal(me, "db", "x", 1, "sid", [forged])


def test_signature_and_inputs_are_checked(me: CoreApp) -> None:
    args = {"default_key": me.default_key()}
    req = signed(me.appid, "A" * 32, {"secretName": "db", "secretData": "x"})
    call = Call(op="seal_secret", auth=req, app=me.cred, args={"secret_id": "sid", "version": 1, **args})
    with pytest.raises(errors.SignError):
        raise_reply(me.enc.handle(call))
    with refused("Cannot find default CMK."):
        seal(me, "db", "x", 1, "sid")
    for bad in ({"secret_id": "sid", "version": 0}, {"secret_id": "", "version": 1}, {"version": 1}):
        with pytest.raises(errors.CryptoError):
            me.call("seal_secret", {"secretName": "db", "secretData": "x"}, **bad, **args)
    with pytest.raises(errors.CryptoError):
        me.call("seal_secret", {"secretName": "db"}, secret_id="sid", version=1, **args)
