"""Fixtures of the attestation suite: real swtpm instances, the DCAP sample quotes and their pinned time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from ehsm_kms.provisioning.attest.tpm2 import Tpm2Provider
from tests.attest.swtpm import Swtpm, running_swtpm
from tests.e2e.conftest import stores  # noqa: F401 (a fixture, for tests.e2e.conftest.start_kms)
from tests.pg import pg_run, pg_schema  # noqa: F401 (fixtures)
from tests.storage.conftest import store  # noqa: F401 (a migrated store on each backend)
from tests.vectors import vector_path

PCRS = "sha256:0,1,2,3,4,5,6,7,16"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Sample:
    """One of the real DCAP quotes of ../shared/vectors/sgx-dcap, its collateral and the time to verify it at."""

    quote: bytes
    collateral: Path
    pinned_time: int  # the TCB info's issue date plus one hour (SOURCE.md)


def _sample(name: str) -> Sample:
    quote = vector_path(f"sgx-dcap/{name}_quote").read_bytes()
    collateral = vector_path(f"sgx-dcap/{name}_quote_collateral.json")
    tcb_info = json.loads(json.loads(collateral.read_text())["tcb_info"])
    issued = datetime.fromisoformat(tcb_info["issueDate"].replace("Z", "+00:00"))
    return Sample(quote, collateral, int(issued.timestamp()) + 3600)


@pytest.fixture(scope="session")
def sgx_sample() -> Sample:
    return _sample("sgx")


@pytest.fixture(scope="session")
def tdx_sample() -> Sample:
    return _sample("tdx")


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    with running_swtpm(tmp_path / "tpm") as tpm:
        yield tpm


@pytest.fixture
def other_swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    """A second TPM: another EK, another AK."""
    with running_swtpm(tmp_path / "other-tpm") as tpm:
        yield tpm


@pytest.fixture
def tpm_provider(swtpm: Swtpm) -> Iterator[Tpm2Provider]:
    provider = Tpm2Provider(swtpm.tcti, pcrs=PCRS)
    try:
        yield provider
    finally:
        provider.close()
