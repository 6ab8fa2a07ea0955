"""The interface itself: report data binding, the evidence's wire form, and the development-only ``none`` kind."""

from __future__ import annotations

import hashlib
import logging

import pytest

from ehsm_kms.provisioning.attest import (
    PURPOSE_GENERATE_QUOTE,
    Evidence,
    EvidenceInvalid,
    Provider,
    ReportDataMismatch,
    Verifier,
    bind_report_data,
    load_policy,
)
from ehsm_kms.provisioning.attest.errors import KindRefused, PolicyError
from ehsm_kms.provisioning.attest.none import NonePolicy, NoneProvider, NoneVerifier


def test_report_data_layout() -> None:
    rd = bind_report_data(b"challenge", b"spki", purpose="p")
    assert rd == hashlib.sha256(b"p\x00challenge").digest() + hashlib.sha256(b"spki").digest()
    assert bind_report_data(b"challenge", purpose=PURPOSE_GENERATE_QUOTE)[32:] == bytes(32)
    assert bind_report_data(b"x", purpose="a") != bind_report_data(b"x", purpose="b")
    with pytest.raises(ValueError):
        bind_report_data(b"x", purpose="")


def test_evidence_wire_form() -> None:
    evidence = Evidence("tpm2", b"\x00\xffquote", {"pcrs": {"sha256": {"0": "00"}}})
    assert Evidence.decode(evidence.encode()) == evidence
    assert "quote" not in repr(evidence)
    for raw in (b"{", b"[]", b'{"v":2}', b'{"v":1,"kind":"magic","data":""}', b'{"v":1,"kind":"none","data":"!"}'):
        with pytest.raises(EvidenceInvalid):
            Evidence.decode(raw)
    with pytest.raises(EvidenceInvalid, match="too large"):
        Evidence.decode(b" " * (64 * 1024 + 1))


def test_none_must_be_allowed_on_both_sides() -> None:
    with pytest.raises(KindRefused):
        NoneProvider()
    with pytest.raises(KindRefused):
        NoneVerifier()


def test_none_verification_logs_unattested(caplog: pytest.LogCaptureFixture) -> None:
    provider, verifier = NoneProvider(allow_unattested=True), NoneVerifier(allow_unattested=True)
    assert isinstance(provider, Provider) and isinstance(verifier, Verifier)
    rd = bind_report_data(b"n", b"k", purpose="test")
    evidence = provider.evidence(rd)
    with caplog.at_level(logging.WARNING, logger="ehsm_kms.attest"):
        verdict = verifier.verify(evidence, rd, NonePolicy())
        verifier.verify(evidence, rd, NonePolicy())
    assert verdict.status == "unattested" and not verdict.attested
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert all("unattested" in r.getMessage() for r in caplog.records)
    with pytest.raises(ReportDataMismatch):
        verifier.verify(evidence, bytes(64), NonePolicy())
    with pytest.raises(ValueError):
        provider.evidence(b"short")


def test_none_policy_document() -> None:
    assert isinstance(load_policy('kind = "none"\n'), NonePolicy)
    with pytest.raises(PolicyError):
        load_policy('kind = "none"\nmr_enclave = "x"\n')
    with pytest.raises(KindRefused):
        NoneVerifier(allow_unattested=True).verify(Evidence("tpm2", bytes(64)), bytes(64), NonePolicy())
