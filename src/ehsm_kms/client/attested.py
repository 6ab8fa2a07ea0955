"""Attested enrollment, the SDK's side (docs/attestation.md): check a node's evidence before taking credentials.

``enroll(attest=policy)`` asks AttestNode with a fresh random nonce over a connection of its own, reads the TLS
certificate that this very connection was opened with, and verifies the evidence against the policy with report
data ``bind_report_data(nonce, SPKI of that certificate, purpose="ehsm-kms AttestNode")``. Only then does it send
Enroll, on the same connection (a pool of one), and it accepts the answer only if it came over that connection:
a node that cannot show evidence bound to the key of the TLS session the credentials travel over gets nothing
accepted from it, and evidence replayed from another node (another TLS key) fails the report-data check.

The check of the TLS key replaces trust in a certificate authority: with attestation, a self-signed node
certificate and ``insecure=True`` are safe, because the evidence vouches for the key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ehsm_kms.client import results as r
from ehsm_kms.provisioning.attest.base import Evidence, Policy, Verifier, bind_report_data
from ehsm_kms.provisioning.attest.errors import AttestationError, KindRefused
from ehsm_kms.provisioning.attest.policy import load_policy
from ehsm_kms.wire.actions import ATTEST_NODE_PURPOSE

__all__ = [
    "ONE_CONNECTION",
    "AttestationRefused",
    "AttestedEnrollment",
    "PolicySource",
    "Verifier",
    "policy_of",
    "verifier_for",
]

NONCE_BYTES = 32
# One connection, kept open between AttestNode and Enroll: the credentials come over the attested TLS session.
ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=30.0)

PolicySource = Policy | str | Path
"""A policy object, or a policy file (``.toml``/``.json`` path), or policy text (:func:`load_policy`)."""


class AttestationRefused(AttestationError):
    """Attested enrollment could not be carried out safely (plain HTTP, no TLS session to bind, another
    connection answered). No credentials are returned."""

    default_message = "attested enrollment refused"


def policy_of(source: PolicySource) -> Policy:
    if isinstance(source, Path):
        return load_policy(source)
    if isinstance(source, str):
        is_file = "\n" not in source and Path(source).suffix.lower() in (".toml", ".json")
        return load_policy(Path(source) if is_file else source)
    return source


def verifier_for(policy: Policy) -> Verifier:
    """The kind's verifier for a policy that needs nothing more than itself (tpm2)."""
    if policy.kind == "tpm2":
        from ehsm_kms.provisioning.attest.tpm2 import Tpm2Verifier

        return Tpm2Verifier()
    if policy.kind == "none":
        raise KindRefused(
            "a 'none' policy proves nothing about the node: pass verifier=NoneVerifier(allow_unattested=True) "
            "to accept unattested nodes (development only)"
        )
    raise KindRefused(
        f"{policy.kind} evidence needs quote-verification collateral: pass verifier=SgxDcapVerifier(...) "
        "or TdxVerifier(...) (ehsm_kms.provisioning.attest.dcap)"
    )


def ssl_object(response: httpx.Response) -> Any:
    """The TLS object of the connection ``response`` came over (httpcore's ``network_stream`` extension)."""
    stream = response.extensions.get("network_stream")
    found = stream.get_extra_info("ssl_object") if stream is not None else None
    # anyio gives an ssl.SSLObject; httpcore's sync backend the socket's C-level _ssl._SSLSocket.
    if found is None or not callable(getattr(found, "getpeercert", None)):
        raise AttestationRefused("attested enrollment needs a real TLS connection (no TLS session to bind)")
    return found


def peer_spki(tls: Any) -> bytes:
    """The DER SubjectPublicKeyInfo of the certificate the server presented on this TLS session."""
    from ehsm_kms.core.attest_crypto import certificate_spki

    der = tls.getpeercert(True)  # binary form (positional: the C-level object calls the argument ``der``)
    if not der:
        raise AttestationRefused("the server presented no TLS certificate")
    return certificate_spki(der)


@dataclass
class AttestedEnrollment:
    """One attested enrollment: the nonce, the policy and verifier, and the TLS session that was attested."""

    endpoint: str
    policy: Policy
    verifier: Verifier
    nonce: bytes = field(default_factory=lambda: secrets.token_bytes(NONCE_BYTES), repr=False)
    _tls: Any = None
    verdict: r.NodeAttestation | None = None

    @classmethod
    def start(cls, endpoint: str, source: PolicySource, verifier: Verifier | None) -> AttestedEnrollment:
        if not endpoint.startswith("https://"):
            raise AttestationRefused(f"attested enrollment needs https:// (not {endpoint}): it binds the TLS key")
        policy = policy_of(source)
        return cls(endpoint, policy, verifier if verifier is not None else verifier_for(policy))

    def check_evidence(self, response: httpx.Response, found: r.NodeEvidence) -> None:
        """Verify the evidence against the policy, bound to the nonce and to this connection's TLS key."""
        self._tls = ssl_object(response)
        expected = bind_report_data(self.nonce, peer_spki(self._tls), purpose=ATTEST_NODE_PURPOSE)
        evidence = Evidence.decode(found.evidence)
        verdict = self.verifier.verify(evidence, expected, self.policy)
        self.verdict = r.NodeAttestation(verdict.kind, verdict.status, dict(verdict.measurements))

    def accept(self, response: httpx.Response, made: r.Enrollment) -> r.Enrollment:
        """The credentials, if they came over the attested connection."""
        if self.verdict is None or self._tls is None:
            raise AttestationRefused("the node's evidence was not verified")
        try:
            same = ssl_object(response) is self._tls
        except AttestationRefused:
            same = False
        if not same:
            raise AttestationRefused(
                "the enrollment was answered over another connection than the attested one; its credentials are "
                "not accepted (enroll again)"
            )
        return r.Enrollment(made.appid, made.apikey, self.verdict)
