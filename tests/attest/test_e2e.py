"""The remote-attestation actions on a live ``ehsm-kms serve`` (the tests/e2e harness), SQLite store.

* A node with the SGX sample's collateral file and the pinned verification time (``attestation_time``, a test
  hook) and no TEE: VerifyQuote on the real SGX quote, quote policies, and GenerateQuote's refusal.
* A node whose provider is a real swtpm: GenerateQuote binds the challenge into the TPM quote.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ehsm_kms.provisioning.attest import PURPOSE_GENERATE_QUOTE, Evidence, ReportDataMismatch, bind_report_data
from ehsm_kms.provisioning.attest.tpm2 import Tpm2Policy, Tpm2Provider, Tpm2Verifier, TrustedKey, key_name
from tests.attest.conftest import PCRS, Sample
from tests.attest.swtpm import Swtpm, running_swtpm
from tests.e2e import App, b64, enclave_error, node_error, params_sort_str, signature
from tests.e2e.conftest import Kms, start_kms, stop_kms

MR_ENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MR_SIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
NONCE = "bm9uY2U="


def config(path: Path, **values: str | int) -> str:
    lines = [f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def verifier_kms(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sgx_sample: Sample
) -> Iterator[Kms]:
    path = tmp_path_factory.mktemp("attest-config") / "kms.toml"
    toml = config(path, collateral_file=str(sgx_sample.collateral), attestation_time=sgx_sample.pinned_time)
    kms = start_kms(request, "sqlite", "attest-verifier", "--config", toml, "--enroll-mode", "open")
    try:
        yield kms
    finally:
        stop_kms(kms)


@pytest.fixture
def app(verifier_kms: Kms) -> App:
    return verifier_kms.enroll()


def verify(app: App, quote: bytes, **extra: Any) -> dict[str, Any]:
    return app.call("VerifyQuote", {"quote": b64(quote), "nonce": NONCE, **extra})


def test_verify_quote_on_the_real_sgx_sample(app: App, sgx_sample: Sample) -> None:
    out = verify(app, sgx_sample.quote)
    assert out["code"] == 200 and out["message"] == "success!", out
    result = out["result"]
    assert list(result) == ["nonce", "result", "mr_enclave", "mr_signer", "sign"]
    assert result["nonce"] == NONCE
    assert result["result"] == 0xA008  # ConfigurationAndSWHardeningNeeded as sgx_ql_qv_result_t
    assert (result["mr_enclave"], result["mr_signer"]) == (MR_ENCLAVE, MR_SIGNER)
    unsigned = {k: v for k, v in result.items() if k != "sign"}
    assert result["sign"] == signature(app.apikey, params_sort_str(unsigned))


def test_quote_policies(app: App, verifier_kms: Kms, sgx_sample: Sample) -> None:
    upload = app.call("UploadQuotePolicy", {"mr_enclave": MR_ENCLAVE, "mr_signer": MR_SIGNER})
    assert upload["code"] == 200 and upload["message"] == "Upload quote policy success.", upload
    policy_id = upload["result"]["policyId"]
    got = app.call("GetQuotePolicy", {"policyId": policy_id})
    assert got["message"] == "Query quote policy success."
    assert list(got["result"]) == ["policyId", "mr_enclave", "mr_signer", "createTime"]
    assert got["result"]["mr_enclave"] == MR_ENCLAVE and isinstance(got["result"]["createTime"], int)

    assert verify(app, sgx_sample.quote, policyId=policy_id)["code"] == 200

    other = app.ok("UploadQuotePolicy", {"mr_enclave": "00" * 32, "mr_signer": MR_SIGNER})["policyId"]
    assert verify(app, sgx_sample.quote, policyId=other) == node_error(
        400, "The quote does not match the policy: mr_enclave."
    )
    unknown = "00000000-0000-4000-8000-000000000000"
    assert verify(app, sgx_sample.quote, policyId=unknown) == node_error(400, "Invalid  policyId.")
    stranger = verifier_kms.enroll()
    assert verify(stranger, sgx_sample.quote, policyId=policy_id) == node_error(400, "Invalid  policyId.")
    # As the original: an unknown id answers 200 with only the id (documented in docs/attestation.md).
    assert stranger.call("GetQuotePolicy", {"policyId": policy_id}) == {
        "code": 200,
        "message": "Query quote policy success.",
        "result": {"policyId": policy_id},
    }


def test_verify_quote_refusals(app: App, sgx_sample: Sample, tdx_sample: Sample) -> None:
    changed = bytearray(sgx_sample.quote)
    changed[200] ^= 0x01  # inside MRSIGNER
    out = verify(app, bytes(changed))
    assert out["code"] == 400 and out["message"].startswith("the quote does not verify"), out
    out = verify(app, tdx_sample.quote)
    assert out["code"] == 400 and "not a sgx-dcap quote" in out["message"], out
    assert verify(app, bytes(8193)) == enclave_error(400, "The quote's length is invalid.")
    body = app.body({"quote": b64(sgx_sample.quote), "nonce": NONCE}, apikey="x" * 32)
    assert app.send("VerifyQuote", body) == node_error(400, "sign error")


def test_generate_quote_without_a_tee(app: App, verifier_kms: Kms) -> None:
    """Never a made-up quote: the contract's enclave error, and the server's log says why."""
    assert app.call("GenerateQuote", {"challenge": b64(b"fresh")}) == enclave_error(500, "Server exception.")
    assert "GenerateQuote failed on this node: This node has no TEE" in verifier_kms.server.log()


# ---------------------------------------------------------------- a node with a TPM
@pytest.fixture(scope="module")
def tpm_kms(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kms, bytes]]:
    root = tmp_path_factory.mktemp("attest-tpm")
    with running_swtpm(root / "tpm") as tpm:
        ak_name = _ak_name(tpm)
        toml = config(root / "kms.toml", attestation_provider="tpm2", tpm2_tcti=tpm.tcti, tpm2_pcrs=PCRS)
        kms = start_kms(request, "sqlite", "attest-tpm", "--config", toml, "--enroll-mode", "open")
        try:
            yield kms, ak_name
        finally:
            stop_kms(kms)


def _ak_name(tpm: Swtpm) -> bytes:
    """The AK this TPM makes (a primary key: the server's is the same), read before the server connects."""
    provider = Tpm2Provider(tpm.tcti, pcrs=PCRS)
    try:
        return key_name(provider.identity().ak_public)
    finally:
        provider.close()


def test_generate_quote_binds_the_challenge_into_tpm2_evidence(tpm_kms: tuple[Kms, bytes]) -> None:
    kms, ak_name = tpm_kms
    app = kms.enroll()
    challenge = b"a fresh challenge from the client"
    out = app.call("GenerateQuote", {"challenge": b64(challenge)})
    assert out["code"] == 200 and list(out["result"]) == ["challenge", "quote"], out
    assert out["result"]["challenge"] == b64(challenge)
    evidence = Evidence.decode(base64.b64decode(out["result"]["quote"]))
    assert evidence.kind == "tpm2"
    policy = Tpm2Policy(
        pcrs={"sha256": {i: "00" * 32 for i in (0, 1, 2, 3, 4, 5, 6, 7, 16)}},  # a fresh swtpm measured nothing
        trusted_aks=(TrustedKey(name=ak_name),),
    )
    expected = bind_report_data(challenge, purpose=PURPOSE_GENERATE_QUOTE)
    verdict = Tpm2Verifier().verify(evidence, expected, policy)
    assert verdict.measurements["ak"] == ak_name.hex()
    with pytest.raises(ReportDataMismatch):
        Tpm2Verifier().verify(evidence, bind_report_data(b"another", purpose=PURPOSE_GENERATE_QUOTE), policy)
