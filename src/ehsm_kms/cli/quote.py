"""``ehsm-kms quote ...``: remote attestation (contract section 7): quotes and quote policies.

``quote verify`` exits 0 for any genuine quote and prints its DCAP status: as with the original, a status other
than 0 (OK) is the caller's to judge (docs/attestation.md).
"""

from __future__ import annotations

import secrets

import click

from ehsm_kms.cli.options import Options, b64, kms_command, read_b64, read_input, when, write_output
from ehsm_kms.client.results import QuotePolicy

POLICY = click.option("--policy-id", help="The quote policy's id (of 'quote upload-policy').")


@click.group()
def quote() -> None:
    """Generate and verify TEE quotes; store quote policies."""


def _challenge(text: str | None, value: str | None, what: str) -> bytes:
    if text is not None and value is not None:
        raise click.UsageError(f"give either --{what} or --{what}-b64")
    if value is not None:
        return read_b64(value, f"--{what}-b64")
    return text.encode("utf-8") if text is not None else secrets.token_bytes(32)


@quote.command("generate")
@click.option("--challenge", help="The challenge (UTF-8 text) the quote binds. Default: 32 random bytes.")
@click.option("--challenge-b64", help="The challenge as base64.")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the quote (raw bytes) to this file instead of printing it as base64.",
)
@kms_command
def generate(opts: Options, challenge: str | None, challenge_b64: str | None, out_path: str | None) -> None:
    """A quote of the server's TEE for a challenge (fails on a node without a TEE)."""
    made = _challenge(challenge, challenge_b64, "challenge")
    with opts.client() as client:
        got = client.generate_quote(made)
    if opts.as_json:
        opts.emit({"challenge": got.challenge, "quote": b64(got.quote)})
    elif out_path:
        write_output(got.quote, out_path)
    else:
        click.echo(b64(got.quote))


@quote.command("verify")
@click.option(
    "--in",
    "in_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The quote (raw bytes; default: standard input).",
)
@click.option("--base64", "is_b64", is_flag=True, help="The input is base64, not raw bytes.")
@click.option("--nonce", help="A nonce (UTF-8 text) echoed in the signed result. Default: 16 random bytes.")
@click.option("--nonce-b64", help="The nonce as base64.")
@POLICY
@kms_command
def verify(
    opts: Options, in_path: str | None, is_b64: bool, nonce: str | None, nonce_b64: str | None, policy_id: str | None
) -> None:
    """Verify a quote (and a stored policy); prints its measurements and DCAP status."""
    data = read_input(in_path)
    quote_bytes = read_b64(data.decode("ascii", "replace"), "the quote") if is_b64 else data
    if nonce is None and nonce_b64 is None:
        nonce_b64 = b64(secrets.token_bytes(16))
    made = _challenge(nonce, nonce_b64, "nonce")
    with opts.client() as client:
        got = client.verify_quote(quote_bytes, made, policy_id=policy_id)
    status = "OK" if got.ok else f"{got.result:#06x} (not OK: check it)"
    opts.emit(
        {
            "nonce": got.nonce,
            "result": got.result,
            "ok": got.ok,
            "mr_enclave": got.mr_enclave,
            "mr_signer": got.mr_signer,
            "sign": got.sign,
        },
        f"mr_enclave: {got.mr_enclave}\nmr_signer:  {got.mr_signer}\nstatus:     {status}",
    )


def _policy(opts: Options, policy: QuotePolicy) -> None:
    opts.emit(
        {
            "policyId": policy.policy_id,
            "mr_enclave": policy.mr_enclave,
            "mr_signer": policy.mr_signer,
            "createTime": policy.create_time,
        },
        f"policy:     {policy.policy_id}\nmr_enclave: {policy.mr_enclave}\nmr_signer:  {policy.mr_signer}\n"
        f"created:    {when(policy.create_time)}",
    )


@quote.command("upload-policy")
@click.option("--mr-enclave", required=True, help="MRENCLAVE, 64 lower-case hex digits.")
@click.option("--mr-signer", required=True, help="MRSIGNER, 64 lower-case hex digits.")
@kms_command
def upload_policy(opts: Options, mr_enclave: str, mr_signer: str) -> None:
    """Store a quote policy; prints its id."""
    with opts.client() as client:
        policy = client.upload_quote_policy(mr_enclave, mr_signer)
    opts.emit({"policyId": policy.policy_id}, policy.policy_id)


@quote.command("get-policy")
@click.option("--policy-id", required=True, help="The quote policy's id.")
@kms_command
def get_policy(opts: Options, policy_id: str) -> None:
    """Show a stored quote policy."""
    with opts.client() as client:
        policy = client.get_quote_policy(policy_id)
    _policy(opts, policy)
