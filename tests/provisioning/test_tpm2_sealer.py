"""The tpm2 sealer on a real swtpm: round trip, another TPM or a cleared TPM cannot unseal, damage is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from tpm2_pytss import ESAPI
from tpm2_pytss.constants import ESYS_TR

from ehsm_kms import errors
from ehsm_kms.core import dk
from ehsm_kms.core.bootstrap import make_sealer
from ehsm_kms.core.coreconfig import CoreConfig
from ehsm_kms.core.sealers.base import header, sealed_by
from ehsm_kms.core.sealers.tpm2 import Tpm2Sealer
from tests.attest.swtpm import Swtpm


def test_round_trip_through_the_sealed_file(swtpm: Swtpm, tmp_path: Path) -> None:
    sealer = make_sealer(CoreConfig(sealer="tpm2", sealed_path=str(tmp_path / "dk.sealed"), tpm2_tcti=swtpm.tcti))
    assert isinstance(sealer, Tpm2Sealer)
    path = tmp_path / "dk.sealed"
    ring = dk.load_or_create(sealer, path)
    assert sealed_by(path.read_bytes()) == "tpm2"
    assert ring.to_bytes() not in path.read_bytes()
    assert dk.load_or_create(Tpm2Sealer(swtpm.tcti), path, create=False) == ring
    ring.rotate()
    dk.save(sealer, path, ring)
    reopened = dk.load_or_create(Tpm2Sealer(swtpm.tcti), path, create=False)
    assert reopened == ring and reopened.versions == (1, 2)


def test_another_tpm_cannot_unseal(swtpm: Swtpm, other_swtpm: Swtpm) -> None:
    sealed = Tpm2Sealer(swtpm.tcti).seal(b"ring bytes" * 10)
    with pytest.raises(errors.CoreStartError, match="not the TPM"):
        Tpm2Sealer(other_swtpm.tcti).unseal(sealed)
    assert Tpm2Sealer(swtpm.tcti).unseal(sealed) == b"ring bytes" * 10


def test_the_same_tpm_after_a_clear_cannot_unseal(swtpm: Swtpm) -> None:
    sealed = Tpm2Sealer(swtpm.tcti).seal(b"ring")
    with ESAPI(swtpm.tcti) as ctx:
        ctx.clear(ESYS_TR.RH_PLATFORM)  # a new owner seed: another storage key
    with pytest.raises(errors.CoreStartError, match="not the TPM"):
        Tpm2Sealer(swtpm.tcti).unseal(sealed)


def test_damage_is_refused(swtpm: Swtpm) -> None:
    sealer = Tpm2Sealer(swtpm.tcti)
    sealed = sealer.seal(b"ring")
    flipped = bytearray(sealed)
    flipped[-3] ^= 1
    with pytest.raises(errors.CoreStartError, match="damaged"):
        sealer.unseal(bytes(flipped))
    with pytest.raises(errors.CoreStartError, match="truncated"):
        sealer.unseal(sealed[:40])
    with pytest.raises(errors.CoreStartError, match="made by the 'passphrase' sealer"):
        sealer.unseal(header("passphrase") + sealed[len(header("tpm2")) :])


def test_an_unreachable_tpm_is_a_clear_error() -> None:
    with pytest.raises(errors.CoreStartError, match="cannot reach the TPM"):
        Tpm2Sealer("swtpm:host=127.0.0.1,port=1").seal(b"ring")
