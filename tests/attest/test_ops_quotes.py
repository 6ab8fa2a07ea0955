"""The core's ``sign_quote_result``: the contract's worked VerifyQuote signature, and what the core refuses."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ehsm_kms import errors
from ehsm_kms.core import keyblob
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.enclave import Enclave, apikey_binding
from ehsm_kms.core.protocol import AppCredential, Call
from ehsm_kms.core.proxy import raise_reply
from tests.signing import signed
from tests.wire import load_data

VECTORS = load_data("sign_vectors.json")
WORKED = VECTORS["verify_quote_result"]  # contract section 7: apikey of 2.4, result 40967, nonce bm9uY2U=


@pytest.fixture(scope="module")
def enclave() -> Enclave:
    return Enclave(DomainKeyRing.generate(), run_self_tests=False)


def credential(enc: Enclave) -> AppCredential:
    """The contract's example app: its APIKey sealed by this core, as Enroll would have."""
    appid, apikey = VECTORS["appid"], VECTORS["apikey"]
    return AppCredential(appid, keyblob.wrap(enc.ring, apikey_binding(appid), apikey.encode("ascii")))


def quote_with(mr_enclave: str, mr_signer: str) -> str:
    """Bytes with the measurements at an SGX quote's report-body offsets (the core checks only those)."""
    quote = bytearray(432)
    quote[112:144] = bytes.fromhex(mr_enclave)
    quote[176:208] = bytes.fromhex(mr_signer)
    return base64.b64encode(bytes(quote)).decode()


def sign(enc: Enclave, result: dict[str, Any], payload: dict[str, Any], apikey: str | None = None) -> str:
    req = signed(VECTORS["appid"], apikey or VECTORS["apikey"], payload)
    call = Call(op="sign_quote_result", auth=req, app=credential(enc), args={"result": result})
    out: str = raise_reply(enc.handle(call))["sign"]
    return out


def worked_payload() -> dict[str, Any]:
    r = WORKED["result"]
    return {"quote": quote_with(r["mr_enclave"], r["mr_signer"]), "nonce": r["nonce"]}


def test_the_contracts_worked_example(enclave: Enclave) -> None:
    assert sign(enclave, dict(WORKED["result"]), worked_payload()) == WORKED["sign"]
    assert WORKED["sign"] == "zFjMHlNEtHo7+7TVJT/agPhI9SCwJwrMFziNaw4JWFY="


def test_result_zero_is_left_out_of_the_string(enclave: Enclave) -> None:
    """``result=0`` (OK) is skipped by the JavaScript rule: the sign covers only the other three fields."""
    from ehsm_kms.wire.sign import signature

    ok = {**WORKED["result"], "result": 0}
    r = WORKED["result"]
    expected = signature(
        VECTORS["apikey"], f"mr_enclave={r['mr_enclave']}&mr_signer={r['mr_signer']}&nonce={r['nonce']}"
    )
    assert sign(enclave, ok, worked_payload()) == expected


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": "b3RoZXI="},  # not the signed payload's nonce
        {"mr_enclave": "00" * 32},  # not the quote's
        {"mr_signer": "11" * 32},
        {"result": True},
        {"result": "40967"},
        {"extra": 1},
    ],
)
def test_the_core_does_not_sign_what_the_request_did_not_ask(enclave: Enclave, change: dict[str, Any]) -> None:
    result = {**WORKED["result"], **change}
    with pytest.raises(errors.CryptoError):
        sign(enclave, result, worked_payload())


def test_a_bad_request_signature_is_refused(enclave: Enclave) -> None:
    with pytest.raises(errors.SignError):
        sign(enclave, dict(WORKED["result"]), worked_payload(), apikey="x" * 32)
