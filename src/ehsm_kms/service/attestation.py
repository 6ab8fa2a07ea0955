"""The remote-attestation actions (contract section 7): GenerateQuote, VerifyQuote, UploadQuotePolicy, GetQuotePolicy.

Where we differ from the original, on purpose (docs/attestation.md):

* GenerateQuote binds the challenge into the evidence's report data
  (``SHA-256("ehsm-kms GenerateQuote" || 0x00 || challenge) || 32 zero bytes``); the original quoted 64 zero
  bytes and only echoed the challenge. A node without a TEE answers the contract's enclave error
  ``500 "Server exception."`` (and logs why) instead of a quote. With the ``tpm2`` provider, ``quote`` is the
  base64 of the evidence's JSON form (:meth:`Evidence.encode`), not an SGX quote.
* VerifyQuote verifies the quote with dcap-qvl against the configured collateral, at a trusted time (the node's
  clock), and refuses quotes that are not in canonical form; a policy mismatch is ``400`` "The quote does not match
  the policy." (the original: ``500 "Server exception."``). ``mr_enclave`` and ``mr_signer`` are always in the
  result (the original added them only with a policy). ``result`` is the DCAP status as the contract's
  sgx_ql_qv_result_t integer: as in the original, a non-zero status is the caller's to judge.
* Every action checks the request's signature before it does anything else (the original verified quotes of
  requests whose signature it had checked too, but stored policies by a separate path).

GetQuotePolicy of an unknown policy id answers 200 with only ``policyId``, as the original (section 12.2.8).

AttestNode (ours, docs/attestation.md) is attested enrollment's first step: a GET action like Enroll, asked before
the client has an appid, that answers the node's evidence over the client's nonce *and* the DER SubjectPublicKeyInfo
of the node's TLS certificate (``bind_report_data(nonce, spki, purpose="ehsm-kms AttestNode")``). The client checks
the evidence against its policy and that the key is the one of the connection it is on, then enrolls on that same
connection. It needs no authentication because it reveals nothing but evidence, which is public by design.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ehsm_kms import errors
from ehsm_kms.config import Settings
from ehsm_kms.core.protocol import Call, SignedRequest
from ehsm_kms.provisioning.attest.base import PURPOSE_GENERATE_QUOTE, Evidence, Provider, Verdict, bind_report_data
from ehsm_kms.provisioning.attest.errors import (
    CollateralUnavailable,
    InvalidPolicyId,
    NoTee,
    ProviderUnavailable,
    QuoteLengthInvalid,
    QuotePolicyMismatch,
)
from ehsm_kms.service.node import Node
from ehsm_kms.service.registry import Outcome, action
from ehsm_kms.storage.quotes_base import QuotePolicyRecord
from ehsm_kms.wire import payload as wire_payload
from ehsm_kms.wire.actions import ATTEST_NODE_PURPOSE

if TYPE_CHECKING:
    from ehsm_kms.provisioning.attest.dcap import SgxDcapVerifier

MAX_QUOTE_BYTES = 8192  # EH_QUOTE_MAX_SIZE (contract section 4.6)
PROVIDERS = ("", "sgx-dcap", "tpm2")
_NODE_SIDE = (NoTee, ProviderUnavailable, CollateralUnavailable)
NONCE_MIN, NONCE_MAX = 16, 64  # AttestNode's nonce, in bytes: fresh enough, and no more than a challenge needs
PURPOSE_ATTEST_NODE: Final = ATTEST_NODE_PURPOSE  # evidence made for AttestNode is not GenerateQuote's, and back
NO_TLS_MESSAGE: Final = (
    "This node serves no TLS certificate of its own (tls_cert or tls_self_signed): AttestNode needs one to bind."
)
_T = TypeVar("_T")
log = logging.getLogger("ehsm_kms.attest")


@dataclass
class AttestationContext:
    """What one node attests with: its evidence provider (None: no TEE) and its quote verifier (None: no
    collateral configured)."""

    provider: Provider | None = None
    verifier: SgxDcapVerifier | None = None
    tls_cert: Path | None = None  # the certificate the node serves, whose key AttestNode binds
    _spki: bytes | None = None

    def channel_key(self) -> bytes:
        """The DER SubjectPublicKeyInfo of the node's TLS certificate, read once."""
        if self._spki is None:
            if self.tls_cert is None:
                raise ProviderUnavailable(NO_TLS_MESSAGE)
            # Imported here: the server process loads cryptography only when it attests (tests/test_invariants.py).
            from ehsm_kms.core.attest_crypto import certificate_spki

            try:
                self._spki = certificate_spki(self.tls_cert.read_bytes())
            except (OSError, ValueError) as exc:
                err = ProviderUnavailable(NO_TLS_MESSAGE)
                err.add_note(f"{self.tls_cert}: {exc}")
                raise err from None
        return self._spki


_CONTEXTS: weakref.WeakKeyDictionary[Node, AttestationContext] = weakref.WeakKeyDictionary()
_NONE = AttestationContext()


def build_context(settings: Settings) -> AttestationContext:
    """The provider and verifier the settings name; ConfigError for a provider we do not know.

    The ``none`` kind is no provider here: GenerateQuote never answers with unattested evidence.
    """
    kind = settings.attestation_provider
    provider: Provider | None = None
    if kind not in PROVIDERS:
        raise errors.ConfigError("attestation_provider must be '' (no TEE), 'sgx-dcap' (Gramine) or 'tpm2'")
    if kind == "sgx-dcap":
        from ehsm_kms.provisioning.attest.gramine import GramineSgxProvider

        provider = GramineSgxProvider()
    elif kind == "tpm2":
        from ehsm_kms.provisioning.attest.tpm2 import Tpm2Provider

        provider = Tpm2Provider(settings.tpm2_tcti, pcrs=settings.tpm2_pcrs)
    verifier = None
    if settings.collateral_file or settings.pccs_url:
        from ehsm_kms.provisioning.attest import dcap

        pinned = settings.attestation_time
        clock: Callable[[], int] = (lambda: pinned) if pinned else (lambda: int(time.time()))
        source: dcap.CollateralSource = (
            dcap.CollateralFile(settings.collateral_file) if settings.collateral_file else dcap.Pccs(settings.pccs_url)
        )
        verifier = dcap.SgxDcapVerifier(source, clock=clock)
    return AttestationContext(provider, verifier, tls_certificate(settings))


def tls_certificate(settings: Settings) -> Path | None:
    """The certificate ``ehsm-kms serve`` serves: the given one, or the self-signed one of the data directory
    (the name :func:`ehsm_kms.server.tls.self_signed` gives it); None over plain HTTP."""
    if settings.tls_cert:
        return Path(settings.tls_cert)
    if settings.tls_self_signed:
        return settings.data_path / "tls-cert.pem"
    return None


def configure(node: Node, settings: Settings) -> Node:
    """Attach the settings' attestation context to ``node`` (once, when the node is built); return the node."""
    _CONTEXTS[node] = build_context(settings)
    return node


def context(node: Node) -> AttestationContext:
    return _CONTEXTS.get(node, _NONE)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def _node_side(action: str, work: Awaitable[_T]) -> _T:
    """What this node cannot do (no TEE, no collateral, the TPM not answering) is the server's failure, not the
    client's: it answers the contract's enclave error, 500 "Server exception.", and the log says why."""
    try:
        return await work
    except _NODE_SIDE as exc:
        log.warning(
            "%s failed on this node: %s", action, "; ".join([exc.message or "", *getattr(exc, "__notes__", ())])
        )
        raise errors.CryptoError() from None


async def _evidence(provider: Provider | None, report_data: bytes) -> Evidence:
    if provider is None:
        raise NoTee()
    return await asyncio.to_thread(provider.evidence, report_data)


async def _appraise(verifier: SgxDcapVerifier | None, quote: bytes) -> Verdict:
    if verifier is None:
        raise CollateralUnavailable()
    return await asyncio.to_thread(verifier.appraise, quote)


@action("GenerateQuote")
async def generate_quote(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    await node.verify(req, app)
    challenge: str = payload["challenge"]  # validated: base64, 1..4096 characters
    report_data = bind_report_data(base64.b64decode(challenge), purpose=PURPOSE_GENERATE_QUOTE)
    evidence = await _node_side("GenerateQuote", _evidence(context(node).provider, report_data))
    quote = evidence.data if evidence.kind in ("sgx-dcap", "tdx") else evidence.encode()
    return Outcome({"challenge": challenge, "quote": _b64(quote)})


@action("VerifyQuote")
async def verify_quote(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    await node.verify(req, app)
    policy: QuotePolicyRecord | None = None
    policy_id = payload.get("policyId")
    if policy_id is not None and policy_id != "":
        policy = await node.store.get_quote_policy(app.appid, policy_id)
        if policy is None:
            raise InvalidPolicyId()
    quote = base64.b64decode(payload["quote"])  # validated: base64, 1..10924 characters
    if not 0 < len(quote) <= MAX_QUOTE_BYTES:
        raise QuoteLengthInvalid()
    verdict = await _node_side("VerifyQuote", _appraise(context(node).verifier, quote))
    mr_enclave, mr_signer = verdict.measurements["mr_enclave"], verdict.measurements["mr_signer"]
    if policy is not None:
        for name, found, wanted in (
            ("mr_enclave", mr_enclave, policy.mr_enclave),
            ("mr_signer", mr_signer, policy.mr_signer),
        ):
            if found != wanted:
                raise QuotePolicyMismatch(f"The quote does not match the policy: {name}.")
    result = {
        "nonce": payload["nonce"],
        "result": verdict.details["qv_result"],
        "mr_enclave": mr_enclave,
        "mr_signer": mr_signer,
    }
    # Not node.call: the replay record was written by node.verify above.
    made = await node.core.call(
        Call(op="sign_quote_result", auth=req, app=node.credential(app), args={"result": result})
    )
    return Outcome({**result, "sign": made["sign"]})


@action("UploadQuotePolicy")
async def upload_quote_policy(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    await node.call("verify_request", req, app, record=False)
    record = QuotePolicyRecord(
        policy_id=str(uuid.uuid4()),
        appid=app.appid,
        mr_enclave=payload["mr_enclave"],
        mr_signer=payload["mr_signer"],
        created_ms=node.clock_ms(),
    )
    await node.store.put_quote_policy(record, replay=node.replay_entry(req))
    return Outcome({"policyId": record.policy_id})


@action("GetQuotePolicy")
async def get_quote_policy(node: Node, req: SignedRequest, payload: dict[str, Any]) -> Outcome:
    app = await node.app(req.appid)
    await node.verify(req, app)
    policy_id: str = payload["policyId"]
    found = await node.store.get_quote_policy(app.appid, policy_id)
    if found is None:
        return Outcome({"policyId": policy_id})  # sic: the original's 200 for an unknown id
    return Outcome(
        {
            "policyId": found.policy_id,
            "mr_enclave": found.mr_enclave,
            "mr_signer": found.mr_signer,
            "createTime": found.created_ms,
        }
    )


async def attest_node(node: Node, nonce: str | None) -> dict[str, Any]:
    """AttestNode: ``{"nonce", "kind", "evidence"}``, the evidence (base64 of :meth:`Evidence.encode`) binding
    the nonce and this node's TLS key. A node without a provider or without a TLS certificate answers a clear
    500 (the node cannot, the client did nothing wrong)."""
    if nonce is not None:
        nonce = nonce.replace(" ", "+")  # a '+' sent unescaped in the query string arrives as a space
    wire_payload.validate("AttestNode", {} if nonce is None else {"nonce": nonce})
    raw = base64.b64decode(nonce or "")
    if not NONCE_MIN <= len(raw) <= NONCE_MAX:
        raise errors.PayloadError("Parameter invalid, The nonce length error.")
    ctx = context(node)
    if ctx.provider is None:
        raise NoTee()
    report_data = bind_report_data(raw, ctx.channel_key(), purpose=PURPOSE_ATTEST_NODE)
    evidence = await _evidence(ctx.provider, report_data)
    return {"nonce": nonce, "kind": evidence.kind, "evidence": _b64(evidence.encode())}
