"""tpm2 evidence on a real software TPM (swtpm): quote, credential activation, PCR policy."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from tpm2_pytss import ESAPI
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG
from tpm2_pytss.types import TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

from ehsm_kms.provisioning.attest import (
    Evidence,
    EvidenceInvalid,
    PolicyMismatch,
    ReportDataMismatch,
    bind_report_data,
    load_policy,
)
from ehsm_kms.provisioning.attest.errors import PolicyError, ProviderUnavailable
from ehsm_kms.provisioning.attest.tpm2 import (
    CredentialChallenge,
    Tpm2Identity,
    Tpm2Policy,
    Tpm2Provider,
    Tpm2Verifier,
    TrustedKey,
    key_name,
    parse_pcr_spec,
)
from tests.attest.conftest import PCRS
from tests.attest.swtpm import Swtpm

PURPOSE = "ehsm-kms test channel"


def report_data(nonce: bytes = b"nonce-1") -> bytes:
    return bind_report_data(nonce, b"channel public key", purpose=PURPOSE)


def policy_for(evidence: Evidence, **trust: tuple[TrustedKey, ...]) -> Tpm2Policy:
    """A policy that expects exactly the PCR values this evidence shows."""
    pcrs = {bank: {int(i): v for i, v in table.items()} for bank, table in evidence.claims["pcrs"].items()}
    return Tpm2Policy(pcrs=pcrs, **trust)


def ek_trust(provider: Tpm2Provider) -> dict[str, tuple[TrustedKey, ...]]:
    return {"trusted_eks": (TrustedKey(name=key_name(provider.identity().ek_public)),)}


def activate(verifier: Tpm2Verifier, provider: Tpm2Provider, policy: Tpm2Policy) -> None:
    challenge, pending = verifier.challenge(provider.identity(), policy)
    verifier.complete(pending, provider.activate(CredentialChallenge.decode(challenge.encode())))


def extend_pcr16(swtpm: Swtpm) -> None:
    with ESAPI(swtpm.tcti) as ctx:
        digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=b"\x5a" * 32))
        ctx.pcr_extend(ESYS_TR.PCR16, TPML_DIGEST_VALUES([digest]))


def test_evidence_verifies_then_fails_after_a_pcr_extend(swtpm: Swtpm, tpm_provider: Tpm2Provider) -> None:
    """The must-show: evidence from a real swtpm verifies; after a PCR extend, the same evidence fails the policy."""
    verifier = Tpm2Verifier()
    first = Evidence.decode(tpm_provider.evidence(report_data()).encode())
    policy = policy_for(first, **ek_trust(tpm_provider))
    activate(verifier, tpm_provider, policy)
    verdict = verifier.verify(first, report_data(), policy)
    assert verdict.status == "OK" and verdict.kind == "tpm2"
    assert verdict.measurements["ak"] == key_name(tpm_provider.identity().ak_public).hex()
    assert verdict.measurements["ek"] == key_name(tpm_provider.identity().ek_public).hex()
    assert verdict.measurements["pcr.sha256.16"] == "00" * 32
    assert verdict.details["safe"] is True

    extend_pcr16(swtpm)
    after = tpm_provider.evidence(report_data())
    assert after.claims["pcrs"]["sha256"]["16"] != "00" * 32
    with pytest.raises(PolicyMismatch, match="PCR sha256:16"):
        verifier.verify(after, report_data(), policy)
    # The quote itself is genuine: a policy for the new value accepts it.
    verifier.verify(after, report_data(), policy_for(after, **ek_trust(tpm_provider)))


def test_wrong_report_data_fails(tpm_provider: Tpm2Provider) -> None:
    evidence = tpm_provider.evidence(report_data(b"nonce-1"))
    policy = policy_for(evidence, trusted_aks=(TrustedKey(name=key_name(tpm_provider.identity().ak_public)),))
    verifier = Tpm2Verifier()
    verifier.verify(evidence, report_data(b"nonce-1"), policy)
    with pytest.raises(ReportDataMismatch):
        verifier.verify(evidence, report_data(b"nonce-2"), policy)
    other_channel = bind_report_data(b"nonce-1", b"another channel key", purpose=PURPOSE)
    with pytest.raises(ReportDataMismatch):
        verifier.verify(evidence, other_channel, policy)


def test_an_ak_not_activated_under_the_trusted_ek_fails(
    tmp_path: Path, tpm_provider: Tpm2Provider, other_swtpm: Swtpm
) -> None:
    trusted = ek_trust(tpm_provider)
    stranger = Tpm2Provider(other_swtpm.tcti, pcrs=PCRS)
    try:
        verifier = Tpm2Verifier()
        evidence = stranger.evidence(report_data())
        policy = policy_for(evidence, **trusted)
        # Never activated: refused.
        with pytest.raises(PolicyMismatch, match="neither trusted nor activated"):
            verifier.verify(evidence, report_data(), policy)
        # Its own EK is not trusted: no challenge is even made.
        with pytest.raises(PolicyMismatch, match="EK is not trusted"):
            verifier.challenge(stranger.identity(), policy)
        # It claims the trusted EK as its own: the trusted TPM cannot open a credential for the stranger's AK,
        # and the stranger cannot open one sealed to the trusted EK.
        claimed = Tpm2Identity(tpm_provider.identity().ek_public, stranger.identity().ak_public)
        challenge, pending = verifier.challenge(claimed, policy)
        for prover in (tpm_provider, stranger):
            with pytest.raises(ProviderUnavailable, match="activate"):
                prover.activate(challenge)
        with pytest.raises(EvidenceInvalid, match="activation failed"):
            verifier.complete(pending, b"\x00" * 32)
        with pytest.raises(PolicyMismatch, match="neither trusted nor activated"):
            verifier.verify(evidence, report_data(), policy)
        # The trusted TPM's own AK, once activated, is accepted; the stranger's still is not.
        activate(verifier, tpm_provider, policy)
        verifier.verify(tpm_provider.evidence(report_data()), report_data(), policy)
        with pytest.raises(PolicyMismatch):
            verifier.verify(evidence, report_data(), policy)
    finally:
        stranger.close()


def test_a_pinned_ak_needs_no_activation(tpm_provider: Tpm2Provider) -> None:
    evidence = tpm_provider.evidence(report_data())
    by_name = TrustedKey.parse(key_name(tpm_provider.identity().ak_public).hex())
    Tpm2Verifier().verify(evidence, report_data(), policy_for(evidence, trusted_aks=(by_name,)))


def test_tampered_evidence_fails(tpm_provider: Tpm2Provider) -> None:
    evidence = tpm_provider.evidence(report_data())
    policy = policy_for(evidence, trusted_aks=(TrustedKey(name=key_name(tpm_provider.identity().ak_public)),))
    verifier = Tpm2Verifier()
    for i in range(len(evidence.data)):
        data = bytearray(evidence.data)
        data[i] ^= 0x01
        with pytest.raises((EvidenceInvalid, ReportDataMismatch)):
            verifier.verify(dataclasses.replace(evidence, data=bytes(data)), report_data(), policy)
    pcrs = {"sha256": {**evidence.claims["pcrs"]["sha256"], "3": "11" * 32}}
    with pytest.raises(EvidenceInvalid, match="PCR digest"):
        verifier.verify(dataclasses.replace(evidence, claims={**evidence.claims, "pcrs": pcrs}), report_data(), policy)
    signature = bytearray.fromhex(evidence.claims["signature"])
    signature[-1] ^= 0x01
    with pytest.raises(EvidenceInvalid, match="signature"):
        claims = {**evidence.claims, "signature": signature.hex()}
        verifier.verify(dataclasses.replace(evidence, claims=claims), report_data(), policy)


def test_policy_from_toml_with_a_pem_ek(tmp_path: Path, tpm_provider: Tpm2Provider) -> None:
    from tpm2_pytss.types import TPMT_PUBLIC

    ek, _ = TPMT_PUBLIC.unmarshal(tpm_provider.identity().ek_public)
    pem = ek.to_pem().decode()
    evidence = tpm_provider.evidence(report_data())
    lines = [f'{i} = "{v}"' for i, v in evidence.claims["pcrs"]["sha256"].items()]
    path = tmp_path / "tpm.toml"
    path.write_text('kind = "tpm2"\ntrusted_ek = """' + pem + '"""\n[pcrs.sha256]\n' + "\n".join(lines) + "\n")
    policy = load_policy(path)
    assert isinstance(policy, Tpm2Policy)
    verifier = Tpm2Verifier()
    activate(verifier, tpm_provider, policy)
    verifier.verify(evidence, report_data(), policy)
    for bad in ('kind = "tpm2"\ntrusted_ak = "zz"\n[pcrs.sha256]\n0 = "00"\n', 'kind = "tpm2"\n[pcrs.sha256]\n'):
        with pytest.raises(PolicyError):
            load_policy(bad)


def test_pcr_spec() -> None:
    assert parse_pcr_spec("sha256:7,0,1+sha384:0") == {"sha256": [0, 1, 7], "sha384": [0]}
    for bad in ("sha1:0", "sha256:", "sha256:24", "md5:1"):
        with pytest.raises(PolicyError):
            parse_pcr_spec(bad)


def test_a_tpm_that_does_not_answer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    provider = Tpm2Provider("swtpm:host=127.0.0.1,port=9", pcrs=PCRS)
    with pytest.raises(ProviderUnavailable, match="the TPM could not"):
        provider.evidence(report_data())
    provider.close()
