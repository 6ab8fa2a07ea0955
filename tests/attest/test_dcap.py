"""SGX and TDX DCAP verification on the real sample quotes (../shared/vectors/sgx-dcap) with dcap-qvl.

The collateral's CRLs have expired, so every verification here is at the pinned time of SOURCE.md (the TCB info's
issue date plus one hour), except the one that shows that the real present time is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ehsm_kms.provisioning.attest import Evidence, EvidenceInvalid, PolicyMismatch, ReportDataMismatch, load_policy
from ehsm_kms.provisioning.attest.dcap import (
    QV_RESULTS,
    CollateralFile,
    SgxDcapVerifier,
    SgxPolicy,
    TdxPolicy,
    TdxVerifier,
    check_framing,
    qv_result,
)
from ehsm_kms.provisioning.attest.errors import CollateralUnavailable, KindRefused, PolicyError
from tests.attest.conftest import Sample

SGX_MR_ENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"  # SOURCE.md
SGX_MR_SIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
SGX_REPORT_DATA = b"Hello, world!".ljust(64, b"\x00")
TDX_MR_TD = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"


def sgx_verifier(sample: Sample) -> SgxDcapVerifier:
    return SgxDcapVerifier(CollateralFile(sample.collateral), clock=lambda: sample.pinned_time)


def tdx_verifier(sample: Sample) -> TdxVerifier:
    return TdxVerifier(CollateralFile(sample.collateral), clock=lambda: sample.pinned_time)


def sgx_policy(**changes: object) -> SgxPolicy:
    base = SgxPolicy(
        mr_enclave=frozenset({SGX_MR_ENCLAVE}),
        mr_signer=frozenset({SGX_MR_SIGNER}),
        isv_prod_id=0,
        min_isv_svn=0,
        allowed_status=frozenset({"ConfigurationAndSWHardeningNeeded"}),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the expected status at the pinned time
def test_sgx_sample_verifies_with_its_status(sgx_sample: Sample) -> None:
    evidence = Evidence("sgx-dcap", sgx_sample.quote)
    verdict = sgx_verifier(sgx_sample).verify(evidence, SGX_REPORT_DATA, sgx_policy())
    assert verdict.status == "ConfigurationAndSWHardeningNeeded"
    assert verdict.details["qv_result"] == 0xA008  # 40968
    assert verdict.details["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert verdict.measurements == {
        "mr_enclave": SGX_MR_ENCLAVE,
        "mr_signer": SGX_MR_SIGNER,
        "isv_prod_id": "0",
        "isv_svn": "0",
        "debug": "false",
    }
    assert verdict.report_data == SGX_REPORT_DATA
    assert "mr_enclave=" + SGX_MR_ENCLAVE in verdict.summary()


def test_tdx_sample_verifies_up_to_date(tdx_sample: Sample) -> None:
    verifier = tdx_verifier(tdx_sample)
    verdict = verifier.appraise(tdx_sample.quote)
    assert verdict.status == "UpToDate" and verdict.details["qv_result"] == 0
    assert verdict.measurements["mr_td"] == TDX_MR_TD
    assert verdict.measurements["debug"] == "false"
    policy = TdxPolicy(mr_td=frozenset({TDX_MR_TD}), rtmrs={0: verdict.measurements["rt_mr0"]})
    again = verifier.verify(Evidence("tdx", tdx_sample.quote), verdict.report_data, policy)
    assert again.measurements == verdict.measurements


def test_the_present_time_is_refused(sgx_sample: Sample) -> None:
    """The sample collateral has expired: verified now, the quote fails (the time is not the caller's to skip)."""
    with pytest.raises(EvidenceInvalid, match="does not verify"):
        SgxDcapVerifier(CollateralFile(sgx_sample.collateral)).appraise(sgx_sample.quote)


# ---------------------------------------------------------------- any changed byte fails
@pytest.mark.parametrize("name", ["sgx", "tdx"])
def test_any_changed_byte_fails(name: str, sgx_sample: Sample, tdx_sample: Sample) -> None:
    """Every byte of each quote, flipped in its lowest bit (the smallest change), makes the quote fail.

    dcap-qvl alone accepts some of these (PEM line breaks, the embedded root certificate, length fields, the TDX
    quote's zero padding): the canonical-framing checks refuse them.
    """
    sample = sgx_sample if name == "sgx" else tdx_sample
    verifier = sgx_verifier(sample) if name == "sgx" else tdx_verifier(sample)
    verifier.appraise(sample.quote)
    accepted = []
    for i in range(len(sample.quote)):
        changed = bytearray(sample.quote)
        changed[i] ^= 0x01
        try:
            verifier.appraise(bytes(changed))
        except EvidenceInvalid:
            continue
        accepted.append(i)
    assert accepted == []


def test_appended_and_cut_bytes_fail(sgx_sample: Sample) -> None:
    verifier = sgx_verifier(sgx_sample)
    for changed in (sgx_sample.quote + b"\x01", sgx_sample.quote[:-1], sgx_sample.quote[:1000], b""):
        with pytest.raises(EvidenceInvalid):
            verifier.appraise(changed)


def test_framing_reads_the_chain(sgx_sample: Sample, tdx_sample: Sample) -> None:
    sgx, tdx = check_framing(sgx_sample.quote), check_framing(tdx_sample.quote)
    assert (sgx.version, sgx.tee_type, len(sgx.pck_chain)) == (3, 0, 3)
    assert (tdx.version, tdx.tee_type, len(tdx.pck_chain)) == (4, 0x81, 3)


# ---------------------------------------------------------------- binding and policy
def test_report_data_must_match(sgx_sample: Sample) -> None:
    with pytest.raises(ReportDataMismatch):
        sgx_verifier(sgx_sample).verify(Evidence("sgx-dcap", sgx_sample.quote), bytes(64), sgx_policy())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mr_enclave": frozenset({"00" * 32})}, "MRENCLAVE"),
        ({"mr_signer": frozenset({"00" * 32})}, "MRSIGNER"),
        ({"isv_prod_id": 1}, "product id"),
        ({"min_isv_svn": 1}, "SVN"),
        ({"allowed_status": frozenset({"UpToDate"})}, "TCB status"),
    ],
)
def test_sgx_policy_mismatch(sgx_sample: Sample, changes: dict[str, object], message: str) -> None:
    verifier = sgx_verifier(sgx_sample)
    with pytest.raises(PolicyMismatch, match=message):
        verifier.verify(Evidence("sgx-dcap", sgx_sample.quote), SGX_REPORT_DATA, sgx_policy(**changes))


def test_debug_bit(sgx_sample: Sample) -> None:
    verdict = sgx_verifier(sgx_sample).appraise(sgx_sample.quote)
    debug = dataclasses.replace(verdict, measurements={**verdict.measurements, "debug": "true"})
    with pytest.raises(PolicyMismatch, match="debug"):
        sgx_policy().check(debug)
    sgx_policy(allow_debug=True).check(debug)


def test_tdx_policy_mismatch(tdx_sample: Sample) -> None:
    verifier = tdx_verifier(tdx_sample)
    verdict = verifier.appraise(tdx_sample.quote)
    evidence = Evidence("tdx", tdx_sample.quote)
    with pytest.raises(PolicyMismatch, match="MRTD"):
        verifier.verify(evidence, verdict.report_data, TdxPolicy(mr_td=frozenset({"00" * 48})))
    with pytest.raises(PolicyMismatch, match="RTMR3"):
        verifier.verify(evidence, verdict.report_data, TdxPolicy(mr_td=frozenset({TDX_MR_TD}), rtmrs={3: "11" * 48}))


def test_kinds_do_not_mix(sgx_sample: Sample, tdx_sample: Sample) -> None:
    with pytest.raises(EvidenceInvalid, match="not a sgx-dcap quote"):
        SgxDcapVerifier(CollateralFile(tdx_sample.collateral), clock=lambda: tdx_sample.pinned_time).appraise(
            tdx_sample.quote
        )
    with pytest.raises(KindRefused):
        tdx_verifier(tdx_sample).verify(Evidence("sgx-dcap", sgx_sample.quote), SGX_REPORT_DATA, sgx_policy())


def test_policies_pin_something() -> None:
    with pytest.raises(PolicyError):
        SgxPolicy()
    with pytest.raises(PolicyError):
        TdxPolicy()


def test_policies_from_toml_and_json(tmp_path: Path, sgx_sample: Sample, tdx_sample: Sample) -> None:
    toml = tmp_path / "sgx.toml"
    toml.write_text(
        f'kind = "sgx-dcap"\nmr_signer = "{SGX_MR_SIGNER.upper()}"\nisv_prod_id = 0\nmin_isv_svn = 0\n'
        'allowed_status = ["UpToDate", "ConfigurationAndSWHardeningNeeded"]\n'
    )
    policy = load_policy(toml)
    assert isinstance(policy, SgxPolicy) and policy.mr_signer == {SGX_MR_SIGNER} and not policy.allow_debug
    sgx_verifier(sgx_sample).verify(Evidence("sgx-dcap", sgx_sample.quote), SGX_REPORT_DATA, policy)
    verdict = tdx_verifier(tdx_sample).appraise(tdx_sample.quote)
    doc = {"kind": "tdx", "mr_td": [TDX_MR_TD], "rtmr": {"1": verdict.measurements["rt_mr1"]}}
    tdx = load_policy(json.dumps(doc))
    assert isinstance(tdx, TdxPolicy) and tdx.allowed_status == {"UpToDate"}
    tdx.check(verdict)
    for bad in ('kind = "sgx-dcap"\nmr_enclave = "abc"\n', 'kind = "sgx-dcap"\n', 'kind = "quantum"\n', "= nope"):
        with pytest.raises(PolicyError):
            load_policy(bad)


def test_collateral_list_is_chosen_by_fmspc(tmp_path: Path, sgx_sample: Sample, tdx_sample: Sample) -> None:
    both = [json.loads(sgx_sample.collateral.read_text()), json.loads(tdx_sample.collateral.read_text())]
    path = tmp_path / "collateral.json"
    path.write_text(json.dumps(both))
    SgxDcapVerifier(CollateralFile(path), clock=lambda: sgx_sample.pinned_time).appraise(sgx_sample.quote)
    TdxVerifier(CollateralFile(path), clock=lambda: tdx_sample.pinned_time).appraise(tdx_sample.quote)
    path.write_text(json.dumps(both[1:] * 2))
    with pytest.raises(CollateralUnavailable, match="FMSPC 00A067110000"):
        SgxDcapVerifier(CollateralFile(path), clock=lambda: sgx_sample.pinned_time).appraise(sgx_sample.quote)
    with pytest.raises(CollateralUnavailable):
        SgxDcapVerifier(CollateralFile(tmp_path / "missing.json")).appraise(sgx_sample.quote)


def test_status_integers() -> None:
    assert qv_result("UpToDate") == 0
    assert qv_result("SWHardeningNeeded") == 40967  # 0xA007, the contract's worked example
    assert qv_result("something new") == 0xA006
    assert len(set(QV_RESULTS.values())) == len(QV_RESULTS)
