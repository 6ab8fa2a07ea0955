"""``none`` evidence where it is explicitly allowed (released, audited and logged as unattested); a pkcs11 root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ehsm_kms.core import dk
from ehsm_kms.core.ringwire import EphemeralKey
from ehsm_kms.core.sealers.passphrase import PassphraseSealer
from ehsm_kms.provisioning.attest.none import NoneProvider
from ehsm_kms.provisioning.dkprotocol import Endpoint, Release, Session, client_context, fetch_remote
from tests.provisioning.procs import PASSPHRASE, start_cache, start_root, wait_ring
from tests.softhsm import SoftHsm, Token

pytestmark = pytest.mark.slow


def test_none_is_released_only_when_allowed_and_is_audited_as_unattested(tmp_path: Path) -> None:
    policy = tmp_path / "none.toml"
    policy.write_text('kind = "none"\n')
    root = start_root(tmp_path / "root", [policy], extra=("--allow-unattested", "--step-timeout", "0.5"))
    cache = None
    try:
        ring = fetch_remote(Endpoint.parse(root.endpoint), client_context([root.cert]), role="cache",
                            provider=NoneProvider(allow_unattested=True))  # fmt: skip
        sealed = root.data_dir / "dk.sealed"
        assert ring == dk.load_or_create(PassphraseSealer(PASSPHRASE.encode()), sealed, create=False)
        records = [json.loads(x) for x in (root.data_dir / "audit.jsonl").read_text().splitlines()]
        release = [r for r in records if r["event"] == "release"][-1]
        assert release["attested"] is False and release["status"] == "unattested" and release["kind"] == "none"
        assert "UNATTESTED" in root.log()

        socket_path = tmp_path / "c.sock"
        cache = start_cache(socket_path, [root], ("--evidence", "none", "--allow-unattested"),
                            log_path=tmp_path / "cache.log", extra=("--socket-mode", "0600"))  # fmt: skip
        assert wait_ring(socket_path) == ring
        assert socket_path.stat().st_mode & 0o777 == 0o600

        with Session(Endpoint.parse(root.endpoint), client_context([root.cert]), timeout=10) as s:
            s.hello("cache", "none", EphemeralKey().public)  # then nothing: the step timeout ends it
            release = s.receive(Release)
            assert not release.ok and release.sealed is None and "too slow" in release.error
    finally:
        if cache is not None:
            cache.stop()
        root.stop()


@pytest.mark.softhsm
def test_a_root_sealed_by_a_pkcs11_token(tmp_path: Path, hsm_token: tuple[SoftHsm, Token]) -> None:
    """The root with the pkcs11 sealer (SoftHSM2): it creates, seals, and reopens the same ring after a restart."""
    hsm, token = hsm_token
    policy = tmp_path / "none.toml"
    policy.write_text('kind = "none"\n')
    pin_env = "EHSM_KMS_TEST_DKS_PIN"
    extra = ("--sealer", "pkcs11", "--pkcs11-module", hsm.module, "--pkcs11-token", token.label,
             "--sealer-secret", f"env:{pin_env}", "--allow-unattested")  # fmt: skip
    rings = []
    for _ in range(2):
        root = start_root(
            tmp_path / "root", [policy], extra=extra, env={pin_env: token.pin, "SOFTHSM2_CONF": str(hsm.conf)}
        )
        try:
            rings.append(fetch_remote(Endpoint.parse(root.endpoint), client_context([root.cert]), role="cache",
                                      provider=NoneProvider(allow_unattested=True)))  # fmt: skip
        finally:
            root.stop()
    assert rings[0] == rings[1]
    assert b"pkcs11" in (tmp_path / "root" / "dk.sealed").read_bytes()[:20]
