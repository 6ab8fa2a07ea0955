"""Who gets the DK: the dkeyserver's policies, and the checks a client's evidence must pass against them.

A client is accepted if its evidence verifies against one of the server's policies of the kind it announced
(several policies: several kinds of machine, or a fleet in the middle of an update). ``none`` evidence counts
only if the server was started with ``allow_unattested`` *and* has a ``none`` policy; a ``none`` policy without
the flag is ignored (and said so at start), so a policy file copied from a laptop opens nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ehsm_kms import errors
from ehsm_kms.provisioning.attest import (
    AttestationError,
    Evidence,
    KindRefused,
    Policy,
    PolicyMismatch,
    Verdict,
    load_policy,
)

log = logging.getLogger("ehsm_kms.dkeyserver")


@dataclass
class Gate:
    policies: Sequence[Policy]
    allow_unattested: bool = False
    collateral: Any = None  # a dcap CollateralSource, for sgx-dcap / tdx policies
    ignored: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        kept = []
        for policy in self.policies:
            if policy.kind == "none" and not self.allow_unattested:
                self.ignored.append("a 'none' policy is ignored: the server was not started with --allow-unattested")
                continue
            if policy.kind in ("sgx-dcap", "tdx") and self.collateral is None:
                raise errors.ConfigError(f"a {policy.kind} policy needs --collateral-file or --pccs-url")
            kept.append(policy)
        self.policies = tuple(kept)

    @classmethod
    def load(
        cls,
        files: Iterable[str | Path],
        *,
        allow_unattested: bool = False,
        collateral_file: str | None = None,
        pccs_url: str | None = None,
    ) -> Gate:
        policies = [load_policy(Path(f)) for f in files]
        if not policies:
            raise errors.ConfigError("the dkeyserver needs at least one attestation policy (--policy FILE)")
        collateral: Any = None
        if collateral_file or pccs_url:
            from ehsm_kms.provisioning.attest import dcap

            collateral = dcap.CollateralFile(collateral_file) if collateral_file else dcap.Pccs(str(pccs_url))
        return cls(policies, allow_unattested=allow_unattested, collateral=collateral)

    def of_kind(self, kind: str) -> list[Policy]:
        return [p for p in self.policies if p.kind == kind]

    def check_kind(self, kind: str) -> None:
        if kind == "none" and not self.allow_unattested:
            raise KindRefused("unattested ('none') evidence is not accepted by this dkeyserver")
        if not self.of_kind(kind):
            raise KindRefused(f"this dkeyserver has no policy for {kind} evidence")

    def tpm2_challenge(self, identity_raw: bytes, verifier: Any) -> tuple[bytes, Any]:
        """MakeCredential under the first policy that trusts the EK; (b"", None) when none does (the AK
        itself may be trusted; verification decides)."""
        from ehsm_kms.provisioning.attest.tpm2 import Tpm2Identity

        identity = Tpm2Identity.decode(identity_raw)
        for policy in self.of_kind("tpm2"):
            try:
                challenge, pending = verifier.challenge(identity, policy)
            except PolicyMismatch:
                continue
            return challenge.encode(), pending
        return b"", None

    def verifier(self, kind: str, tpm2_verifier: Any = None) -> Any:
        if kind == "tpm2":
            return tpm2_verifier
        if kind == "none":
            from ehsm_kms.provisioning.attest.none import NoneVerifier

            return NoneVerifier(allow_unattested=self.allow_unattested)
        from ehsm_kms.provisioning.attest import dcap

        return dcap.SgxDcapVerifier(self.collateral) if kind == "sgx-dcap" else dcap.TdxVerifier(self.collateral)

    def verify(self, kind: str, raw: bytes, expected: bytes, *, tpm2_verifier: Any = None) -> Verdict:
        """The verdict of the first policy that accepts the evidence; the most telling refusal otherwise."""
        self.check_kind(kind)
        evidence = Evidence.decode(raw)
        if evidence.kind != kind:
            raise KindRefused(f"the evidence is {evidence.kind}, but the client announced {kind}")
        verifier = self.verifier(kind, tpm2_verifier)
        failure: AttestationError | None = None
        for policy in self.of_kind(kind):
            try:
                verdict: Verdict = verifier.verify(evidence, expected, policy)
                return verdict
            except PolicyMismatch as exc:
                failure = failure or exc
            except AttestationError as exc:
                # Not a question of policy (bad signature, report data): the same for every policy.
                raise exc from None
        raise failure or KindRefused(f"this dkeyserver has no policy for {kind} evidence")


__all__ = ["Gate"]
