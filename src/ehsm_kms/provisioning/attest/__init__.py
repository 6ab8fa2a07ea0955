"""Attestation evidence: one interface (:mod:`.base`), several kinds.

=========== ===================================== ==================================== =========================
kind        provider (where the TEE is)           verifier                             policy
=========== ===================================== ==================================== =========================
``tpm2``    :class:`.tpm2.Tpm2Provider`           :class:`.tpm2.Tpm2Verifier`          :class:`.tpm2.Tpm2Policy`
``sgx-dcap`` :class:`.gramine.GramineSgxProvider`  :class:`.dcap.SgxDcapVerifier`       :class:`.dcap.SgxPolicy`
``tdx``     (none here)                           :class:`.dcap.TdxVerifier`           :class:`.dcap.TdxPolicy`
``none``    :class:`.none.NoneProvider`           :class:`.none.NoneVerifier`          :class:`.none.NonePolicy`
=========== ===================================== ==================================== =========================

Importing this package loads no kind: import the kind's module (or :func:`.policy.load_policy`, which imports
it). The tpm2 module loads tpm2-pytss, which a KMS server process that does not use tpm2 never imports.
"""

from __future__ import annotations

from ehsm_kms.provisioning.attest.base import (
    KINDS,
    PURPOSE_GENERATE_QUOTE,
    REPORT_DATA_SIZE,
    Evidence,
    Policy,
    Provider,
    Verdict,
    Verifier,
    bind_report_data,
)
from ehsm_kms.provisioning.attest.errors import (
    AttestationError,
    EvidenceInvalid,
    KindRefused,
    PolicyError,
    PolicyMismatch,
    ProviderUnavailable,
    ReportDataMismatch,
)
from ehsm_kms.provisioning.attest.policy import load_policy, policy_from_mapping

__all__ = [
    "KINDS",
    "PURPOSE_GENERATE_QUOTE",
    "REPORT_DATA_SIZE",
    "AttestationError",
    "Evidence",
    "EvidenceInvalid",
    "KindRefused",
    "Policy",
    "PolicyError",
    "PolicyMismatch",
    "Provider",
    "ProviderUnavailable",
    "ReportDataMismatch",
    "Verdict",
    "Verifier",
    "bind_report_data",
    "load_policy",
    "policy_from_mapping",
]
