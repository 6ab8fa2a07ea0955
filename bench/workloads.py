"""The workloads, the keys they need, and their request bodies, for our server and for the peer.

Set-up goes through the public API like any client: enroll apps, CreateKey, one Encrypt (its ciphertext is what every
Decrypt opens) and one Sign (its signature is what every Verify checks). The ListKey app gets its 1,000 keys through
1,000 signed CreateKey requests.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from bench.pool import Payload, Signer

PLAINTEXT_BYTES = 1024
MESSAGE_BYTES = 64
LIST_KEYS = 1000


@dataclass(frozen=True)
class Workload:
    slug: str
    title: str
    action: str
    guess_rps: float  # sizes the first run of a cell; later runs are sized by what was measured
    peer_target: str | None = None  # moto's X-Amz-Target for the same operation


WORKLOADS: tuple[Workload, ...] = (
    Workload("encrypt", "Encrypt 1 KiB (AES-256-GCM)", "Encrypt", 2000, "TrentService.Encrypt"),
    Workload("decrypt", "Decrypt 1 KiB (AES-256-GCM)", "Decrypt", 2000),
    Workload("gdk", "GenerateDataKey 32 bytes", "GenerateDataKey", 2000, "TrentService.GenerateDataKey"),
    Workload("sign_ec", "Sign ECDSA P-256", "Sign", 1500, "TrentService.Sign"),
    Workload("verify_ec", "Verify ECDSA P-256", "Verify", 1500),
    Workload("sign_rsa", "Sign RSA-3072", "Sign", 300),
    Workload("create_key", "CreateKey AES-256", "CreateKey", 1000),
    Workload("list_key", "ListKey (1,000 keys)", "ListKey", 50),
)
BY_SLUG = {w.slug: w for w in WORKLOADS}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------- our server
@dataclass
class App:
    appid: str
    apikey: str

    def signer(self) -> Signer:
        return Signer(self.appid, self.apikey)


@dataclass
class KmsFixture:
    main: App
    lister: App
    aes: str
    ec: str
    rsa: str
    ciphertext: str
    ec_message: str
    ec_signature: str


def kms_path(action: str) -> str:
    return f"/ehsm/?Action={action}"


def enroll(http: httpx.Client) -> App:
    out = http.get("/ehsm", params={"Action": "Enroll"}).json()
    if out.get("code") != 200:
        raise RuntimeError(f"Enroll failed: {out}")
    return App(out["result"]["appid"], out["result"]["apikey"])


def call(http: httpx.Client, app: App, action: str, payload: Payload) -> dict[str, Any]:
    body = app.signer().body(payload)
    resp = http.post(kms_path(action), content=body, headers={"content-type": "application/json"})
    out: dict[str, Any] = resp.json()
    if out.get("code") != 200:
        raise RuntimeError(f"{action} failed during set-up: {out}")
    result: dict[str, Any] = out["result"]
    return result


def create_key_payload(spec: str = "EH_AES_GCM_256", usage: str = "EH_KEYUSAGE_ENCRYPT_DECRYPT") -> dict[str, str]:
    return {"keyspec": spec, "origin": "EH_INTERNAL_KEY", "keyusage": usage}


def sign_payload(keyid: str, message: str, padding: str = "EH_RSA_PKCS1") -> dict[str, str]:
    return {
        "keyid": keyid,
        "message": message,
        "message_type": "EH_RAW",
        "digest_mode": "EH_SHA_256",
        "padding_mode": padding,
    }


def setup_kms(url: str) -> KmsFixture:
    """Apps and keys for every workload (the ListKey app's keys are made afterwards, see :func:`list_pool`)."""
    rng = random.Random(1)
    with httpx.Client(base_url=url, timeout=120.0) as http:
        main, lister = enroll(http), enroll(http)
        aes = call(http, main, "CreateKey", create_key_payload())["keyid"]
        ec = call(http, main, "CreateKey", create_key_payload("EH_EC_P256", "EH_KEYUSAGE_SIGN_VERIFY"))["keyid"]
        rsa = call(http, main, "CreateKey", create_key_payload("EH_RSA_3072", "EH_KEYUSAGE_SIGN_VERIFY"))["keyid"]
        plaintext = b64(rng.randbytes(PLAINTEXT_BYTES))
        ciphertext = call(http, main, "Encrypt", {"keyid": aes, "plaintext": plaintext})["ciphertext"]
        message = b64(rng.randbytes(MESSAGE_BYTES))
        signature = call(http, main, "Sign", sign_payload(ec, message))["signature"]
        verified = call(http, main, "Verify", {**sign_payload(ec, message), "signature": signature})
        if verified.get("result") is not True:
            raise RuntimeError(f"set-up Verify did not verify: {verified}")
    return KmsFixture(main, lister, aes, ec, rsa, ciphertext, message, signature)


def kms_bodies(slug: str, fx: KmsFixture, seed: int) -> Callable[[int], bytes]:
    """A maker of unique signed bodies for one workload."""
    rng = random.Random(seed)
    signer = (fx.lister if slug == "list_key" else fx.main).signer()
    make: Callable[[int], Payload]
    if slug == "encrypt":

        def make(i: int) -> Payload:
            return {"keyid": fx.aes, "plaintext": b64(rng.randbytes(PLAINTEXT_BYTES))}

    elif slug == "decrypt":

        def make(i: int) -> Payload:
            return {"keyid": fx.aes, "ciphertext": fx.ciphertext}

    elif slug == "gdk":

        def make(i: int) -> Payload:
            return {"keyid": fx.aes, "keylen": 32}

    elif slug == "sign_ec":

        def make(i: int) -> Payload:
            return sign_payload(fx.ec, b64(rng.randbytes(MESSAGE_BYTES)))

    elif slug == "verify_ec":

        def make(i: int) -> Payload:
            return {**sign_payload(fx.ec, fx.ec_message), "signature": fx.ec_signature}

    elif slug == "sign_rsa":

        def make(i: int) -> Payload:
            return sign_payload(fx.rsa, b64(rng.randbytes(MESSAGE_BYTES)))

    elif slug == "create_key":

        def make(i: int) -> Payload:
            return create_key_payload()

    elif slug == "list_key":

        def make(i: int) -> Payload:
            return None

    else:
        raise KeyError(slug)
    signer.recheck()
    return lambda i: signer.body(make(i))


def list_key_setup_bodies(fx: KmsFixture) -> Callable[[int], bytes]:
    """CreateKey bodies for the ListKey app (replayed once, before the ListKey runs)."""
    signer = fx.lister.signer()
    return lambda i: signer.body(create_key_payload())


def encrypt_bodies_for(app: App, keyids: list[str], seed: int) -> Callable[[int], bytes]:
    """Encrypt on a key drawn at random for each request (the scale runs)."""
    rng = random.Random(seed)
    signer = app.signer()
    return lambda i: signer.body({"keyid": rng.choice(keyids), "plaintext": b64(rng.randbytes(PLAINTEXT_BYTES))})


# ---------------------------------------------------------------- the peer: moto's KMS (AWS JSON protocol)
AMZ_JSON = "application/x-amz-json-1.1"
# moto routes a request to a service by the credential scope of its Authorization header and never checks the
# signature, so one fixed header serves every request (the peer does no authentication and keeps no replay record).
AMZ_AUTH = (
    "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/kms/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-target, Signature=" + "0" * 64
)


@dataclass
class MotoFixture:
    aes: str
    ec: str


def moto_headers(target: str) -> list[str]:
    return [f"Content-Type: {AMZ_JSON}", f"X-Amz-Target: {target}", f"Authorization: {AMZ_AUTH}"]


def _moto_call(http: httpx.Client, target: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = http.post(
        "/",
        content=orjson.dumps(body),
        headers={"content-type": AMZ_JSON, "x-amz-target": target, "authorization": AMZ_AUTH},
    )
    if resp.status_code != 200:
        raise RuntimeError(f"moto {target} failed during set-up: {resp.status_code} {resp.text[:300]}")
    out: dict[str, Any] = resp.json()
    return out


def setup_moto(url: str) -> MotoFixture:
    with httpx.Client(base_url=url, timeout=60.0) as http:
        aes = _moto_call(http, "TrentService.CreateKey", {})["KeyMetadata"]["KeyId"]
        ec_spec = {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}
        ec = _moto_call(http, "TrentService.CreateKey", ec_spec)["KeyMetadata"]["KeyId"]
        _moto_call(http, "TrentService.Encrypt", {"KeyId": aes, "Plaintext": b64(b"x" * PLAINTEXT_BYTES)})
    return MotoFixture(aes, ec)


def moto_bodies(slug: str, fx: MotoFixture, seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    if slug == "encrypt":
        return lambda i: orjson.dumps({"KeyId": fx.aes, "Plaintext": b64(rng.randbytes(PLAINTEXT_BYTES))})
    if slug == "gdk":
        return lambda i: orjson.dumps({"KeyId": fx.aes, "NumberOfBytes": 32})
    if slug == "sign_ec":
        return lambda i: orjson.dumps(
            {
                "KeyId": fx.ec,
                "Message": b64(rng.randbytes(MESSAGE_BYTES)),
                "MessageType": "RAW",
                "SigningAlgorithm": "ECDSA_SHA_256",
            }
        )
    raise KeyError(slug)
