"""The remote-attestation actions (contract section 7) through the SDK.

Quote policies and GenerateQuote's refusal (the test servers have no TEE) in all four pairings; VerifyQuote of the
real SGX sample quote on a live server given the sample's collateral file and its pinned verification time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ehsm_kms import errors
from ehsm_kms.client import AsyncClient, Client, QuotePolicy, QuotePolicyNotFound, QuoteVerification
from tests.client.harness import Facade, Kms, LoopThread
from tests.live import LiveServer
from tests.vectors import vector_path

MR_ENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MR_SIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"


def test_quote_policy_round_trip(kms: Kms) -> None:
    client = kms.client()
    uploaded = client.upload_quote_policy(MR_ENCLAVE, MR_SIGNER)
    assert isinstance(uploaded, QuotePolicy) and uuid.UUID(uploaded.policy_id)
    got = client.get_quote_policy(uploaded.policy_id)
    assert (got.policy_id, got.mr_enclave, got.mr_signer) == (uploaded.policy_id, MR_ENCLAVE, MR_SIGNER)
    assert got.created_at is not None
    with pytest.raises(QuotePolicyNotFound) as unknown:
        client.get_quote_policy(str(uuid.uuid4()))
    assert unknown.value.exit_code == errors.EXIT_NOT_FOUND
    with pytest.raises(QuotePolicyNotFound):  # another app's policy is not found either
        kms.client().get_quote_policy(uploaded.policy_id)


def test_generate_quote_without_a_tee(kms: Kms) -> None:
    with pytest.raises(errors.CryptoError) as refused:
        kms.client().generate_quote(b"challenge")
    assert refused.value.code == 500 and refused.value.message == "Server exception."
    assert refused.value.exit_code == errors.EXIT_CRYPTO


def test_verify_quote_without_collateral(kms: Kms) -> None:
    client = kms.client()
    with pytest.raises(errors.CryptoError):  # the test servers have no collateral: the node's failure
        client.verify_quote(vector_path("sgx-dcap/sgx_quote").read_bytes(), b"nonce")
    with pytest.raises(errors.BadRequest, match="policyId"):
        client.verify_quote(b"not a quote", b"nonce", policy_id=str(uuid.uuid4()))


# ---------------------------------------------------------------- a node that verifies DCAP quotes
@pytest.fixture(scope="module")
def verifier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("sdk-attest")
    collateral = vector_path("sgx-dcap/sgx_quote_collateral.json")
    tcb_info = json.loads(json.loads(collateral.read_text())["tcb_info"])
    pinned = int(datetime.fromisoformat(tcb_info["issueDate"].replace("Z", "+00:00")).timestamp()) + 3600
    config = root / "kms.toml"
    config.write_text(f'collateral_file = "{collateral}"\nattestation_time = {pinned}\n')
    server = LiveServer(root, f"sqlite:///{root}/kms.db", extra=["--config", str(config), "--enroll-mode", "open"])
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_verify_the_real_sgx_quote(verifier: LiveServer, flavour: str, tmp_path: Path) -> None:
    loop = LoopThread()
    client = Client(verifier.url) if flavour == "sync" else Facade(AsyncClient(verifier.url), loop)
    try:
        client.enroll()
        quote = vector_path("sgx-dcap/sgx_quote").read_bytes()
        got = client.verify_quote(quote, b"nonce")
        assert isinstance(got, QuoteVerification)
        assert (got.mr_enclave, got.mr_signer) == (MR_ENCLAVE, MR_SIGNER)
        assert got.nonce == "bm9uY2U=" and got.result == 0xA008 and not got.ok and got.sign
        policy = client.upload_quote_policy(MR_ENCLAVE, MR_SIGNER)
        assert client.verify_quote(quote, b"nonce", policy_id=policy.policy_id).mr_signer == MR_SIGNER
        other = client.upload_quote_policy("00" * 32, MR_SIGNER)
        with pytest.raises(errors.BadRequest, match="does not match the policy: mr_enclave"):
            client.verify_quote(quote, b"nonce", policy_id=other.policy_id)
        changed = bytearray(quote)
        changed[100] ^= 1
        with pytest.raises(errors.BadRequest):
            client.verify_quote(bytes(changed), b"nonce")
    finally:
        client.close()
        loop.close()
