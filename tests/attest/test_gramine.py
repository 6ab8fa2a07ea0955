"""The SGX provider for nodes under Gramine (``/dev/attestation``).

It cannot run here: it needs an SGX enclave started by Gramine on SGX hardware (with a DCAP quoting enclave).
The unit tests below use a MOCK: a temporary directory that imitates Gramine's pseudo-files (its ``quote`` file is
the real sample quote written by the test, not a quote made for the written report data).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ehsm_kms.provisioning.attest import PURPOSE_GENERATE_QUOTE, bind_report_data
from ehsm_kms.provisioning.attest.errors import ProviderUnavailable
from ehsm_kms.provisioning.attest.gramine import GRAMINE_ATTESTATION_DIR, GramineSgxProvider
from tests.attest.conftest import Sample


def fake_attestation_dir(root: Path, quote: bytes, kind: str = "dcap") -> Path:
    """A mock of Gramine's /dev/attestation (plain files; Gramine's are pseudo-files inside the enclave)."""
    root.mkdir()
    (root / "attestation_type").write_text(kind + "\n")
    (root / "user_report_data").write_bytes(bytes(64))
    (root / "quote").write_bytes(quote)
    return root


def test_provider_writes_report_data_and_reads_the_quote(tmp_path: Path, sgx_sample: Sample) -> None:
    root = fake_attestation_dir(tmp_path / "attestation", sgx_sample.quote)
    provider = GramineSgxProvider(root)
    assert provider.available()
    rd = bind_report_data(b"challenge", purpose=PURPOSE_GENERATE_QUOTE)
    evidence = provider.evidence(rd)
    assert (root / "user_report_data").read_bytes() == rd
    assert evidence.kind == "sgx-dcap" and evidence.data == sgx_sample.quote
    with pytest.raises(ValueError):
        provider.evidence(b"too short")


def test_provider_refuses_other_attestation_types(tmp_path: Path, sgx_sample: Sample) -> None:
    root = fake_attestation_dir(tmp_path / "attestation", sgx_sample.quote, kind="none")
    with pytest.raises(ProviderUnavailable, match="not 'dcap'"):
        GramineSgxProvider(root).evidence(bytes(64))


def test_provider_without_gramine(tmp_path: Path) -> None:
    provider = GramineSgxProvider(tmp_path / "no-such-dir")
    assert not provider.available()
    with pytest.raises(ProviderUnavailable, match="does not run under Gramine"):
        provider.evidence(bytes(64))


@pytest.mark.skipif(
    not (GRAMINE_ATTESTATION_DIR / "quote").exists(),
    reason="needs a node running under Gramine on SGX hardware (/dev/attestation with DCAP); not available here",
)
def test_real_gramine_quote_binds_the_report_data() -> None:  # pragma: no cover - needs SGX hardware
    rd = bind_report_data(b"real", purpose=PURPOSE_GENERATE_QUOTE)
    evidence = GramineSgxProvider().evidence(rd)
    assert evidence.data[368:432] == rd
