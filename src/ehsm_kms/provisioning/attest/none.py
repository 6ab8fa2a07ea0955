"""The ``none`` kind: no TEE, for development only.

Both sides must allow it explicitly (``allow_unattested=True`` on the provider and on the verifier); evidence
of this kind proves nothing but that the peer knew the report data. Every verification under it is logged as a
warning containing "unattested", so a release of the domain key under it is never silent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from ehsm_kms.provisioning.attest.base import Evidence, Policy, Verdict, check_kinds, check_report_data
from ehsm_kms.provisioning.attest.base import require_report_data as _require
from ehsm_kms.provisioning.attest.errors import KindRefused

log = logging.getLogger("ehsm_kms.attest")


class NoneProvider:
    kind: ClassVar[str] = "none"

    def __init__(self, *, allow_unattested: bool = False) -> None:
        if not allow_unattested:
            raise KindRefused("the 'none' attestation provider needs allow_unattested=True (development only)")

    def evidence(self, report_data: bytes) -> Evidence:
        return Evidence(self.kind, _require(report_data), {"warning": "unattested"})


@dataclass(frozen=True, slots=True)
class NonePolicy:
    kind: ClassVar[str] = "none"

    def check(self, verdict: Verdict) -> None:
        return None


class NoneVerifier:
    kind: ClassVar[str] = "none"

    def __init__(self, *, allow_unattested: bool = False) -> None:
        if not allow_unattested:
            raise KindRefused("the 'none' attestation verifier needs allow_unattested=True (development only)")

    def verify(self, evidence: Evidence, expected_report_data: bytes, policy: Policy) -> Verdict:
        check_kinds(evidence, self.kind, policy)
        check_report_data(evidence.data, expected_report_data)
        log.warning("attestation: unattested evidence accepted (kind none, development only)")
        return Verdict(self.kind, "unattested", {}, evidence.data, {"warning": "unattested"})
