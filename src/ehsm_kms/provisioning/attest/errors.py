"""The errors of attestation: each one says which check failed, never what a secret is.

They are :class:`ehsm_kms.errors.EhsmError` subclasses, so the server's one mapper answers them like every other
error. A verifier raises instead of returning a bool (the project's convention): a caller that forgets to look
at a result cannot accept bad evidence.
"""

from __future__ import annotations

from ehsm_kms import errors


class AttestationError(errors.BadRequest):
    """Evidence was refused. The subclasses say why."""

    default_message = "attestation failed"
    exit_code = errors.EXIT_CRYPTO


class EvidenceInvalid(AttestationError):
    """Malformed evidence, a signature or certificate chain that does not verify, a quote not in canonical form."""

    default_message = "the attestation evidence is invalid"


class ReportDataMismatch(AttestationError):
    """Genuine evidence, but not made for this request (its report data binds another nonce or channel key)."""

    default_message = "the attestation evidence is not bound to this request (report data mismatch)"


class PolicyMismatch(AttestationError):
    """Genuine evidence of a measurement (or TCB status, or debug mode) that the policy does not allow."""

    default_message = "the attestation evidence does not match the policy"


class KindRefused(AttestationError):
    """Evidence of another kind than the policy's, or ``none`` evidence where ``none`` is not explicitly allowed."""

    default_message = "this kind of attestation evidence is not accepted"


class PolicyError(errors.ConfigError):
    """A policy document that cannot be used (unknown kind or field, a value of the wrong form)."""


class ProviderUnavailable(errors.InternalError):
    """This node could not make evidence (no TEE device, the TPM did not answer)."""

    default_message = "attestation evidence could not be produced on this node"
    result_null = True


class NoTee(errors.InternalError):
    """GenerateQuote on a node that has no TEE: refused rather than answered with a made-up quote (on the wire
    the action answers the contract's ``500 "Server exception."`` and logs this message)."""

    default_message = "This node has no TEE: no attestation provider is configured."
    result_null = True


class CollateralUnavailable(errors.InternalError):
    """VerifyQuote on a node with neither a collateral file nor a PCCS, or the PCCS did not answer."""

    default_message = "quote verification collateral is not available (set collateral_file or pccs_url)"
    result_null = True


# ---------------------------------------------------------------- the contract's own messages (section 7)
class QuoteLengthInvalid(errors.EhsmError):
    code = 400
    default_message = "The quote's length is invalid."
    result_null = True
    exit_code = errors.EXIT_BAD_REQUEST


class InvalidPolicyId(errors.BadRequest):
    default_message = "Invalid  policyId."  # sic: two spaces, as the original


class QuotePolicyMismatch(AttestationError):
    """The quote's MRENCLAVE or MRSIGNER is not the stored policy's (the original answered 500 "Server exception.")."""

    default_message = "The quote does not match the policy."
