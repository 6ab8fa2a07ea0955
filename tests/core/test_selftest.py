"""Self-tests at core start: every family runs, and a failure means the core refuses to serve, with the reason."""

from __future__ import annotations

import pytest

from ehsm_kms import errors
from ehsm_kms.core import aes, kat, selftest
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.enclave import Enclave


def test_every_family_has_a_self_test() -> None:
    names = [name for name, _ in selftest.TESTS]
    assert names == ["AES-GCM", "SM4", "HMAC", "HKDF", "RSA", "ECDSA", "SM2"]
    report = selftest.run_all()
    assert [line.split(":")[0] for line in report] == names


def test_a_wrong_known_answer_stops_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    real_load = kat.load

    def corrupted(name: str) -> kat.Data:
        data = real_load(name)
        if name.startswith("aes"):
            for case in data["cases"]:
                for field in ("expected",):
                    if field in case:
                        case[field] = ("0" if case[field][0] != "0" else "1") + case[field][1:]
        return data

    monkeypatch.setattr(kat, "load", corrupted)
    with pytest.raises(errors.CoreStartError, match="self-test failed: AES-GCM"):
        aes.self_test()
    with pytest.raises(errors.CoreStartError, match="self-test failed: AES-GCM"):
        Enclave(DomainKeyRing.generate())


def test_an_unexpected_failure_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise ValueError("boom")

    monkeypatch.setattr(selftest, "TESTS", (("SM2", broken),))
    with pytest.raises(errors.CoreStartError, match=r"self-test failed: SM2 \(ValueError\)"):
        Enclave(DomainKeyRing.generate())
