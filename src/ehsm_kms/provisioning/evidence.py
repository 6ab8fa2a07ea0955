"""The evidence provider a dkeycache, worker or recovering root proves itself with, chosen by kind."""

from __future__ import annotations

from typing import Any

from ehsm_kms import errors
from ehsm_kms.provisioning.attest import KINDS


def make_provider(
    kind: str,
    *,
    tpm2_tcti: str | None = None,
    tpm2_pcrs: str | None = None,
    gramine_dir: str | None = None,
    allow_unattested: bool = False,
) -> Any:
    if kind not in KINDS:
        raise errors.ConfigError(f"unknown evidence kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "tpm2":
        if not tpm2_tcti:
            raise errors.ConfigError("tpm2 evidence needs a TCTI (--tpm2-tcti, e.g. device:/dev/tpmrm0)")
        from ehsm_kms.provisioning.attest.tpm2 import DEFAULT_PCRS, Tpm2Provider

        return Tpm2Provider(tpm2_tcti, pcrs=tpm2_pcrs or DEFAULT_PCRS)
    if kind == "sgx-dcap":
        from ehsm_kms.provisioning.attest.gramine import GRAMINE_ATTESTATION_DIR, GramineSgxProvider

        return GramineSgxProvider(gramine_dir or GRAMINE_ATTESTATION_DIR)
    if kind == "none":
        from ehsm_kms.provisioning.attest.none import NoneProvider

        if not allow_unattested:
            raise errors.ConfigError("'none' evidence is for development only: it needs --allow-unattested")
        return NoneProvider(allow_unattested=True)
    raise errors.ConfigError(f"this machine cannot make {kind} evidence (no provider for it here)")


__all__ = ["make_provider"]
