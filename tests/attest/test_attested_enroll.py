"""Attested enrollment (issue 7 part 6) against a live TLS node whose evidence comes from a real swtpm.

The node (``ehsm-kms serve --tls-self-signed``, tpm2 provider) answers AttestNode with a TPM quote whose report
data binds the client's nonce and the SPKI of its TLS certificate. The SDK (sync and async) and the CLI enroll
only after the evidence verifies against the policy: the node's real PCR values and its AK. Refused: another
PCR value, another TPM's AK, and evidence relayed from the real node by a server with another TLS key
(which then answers the enrollment itself).
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ehsm_kms import errors
from ehsm_kms.client import AsyncClient, AttestationRefused, Client, Enrollment, NodeEvidence
from ehsm_kms.client.attested import AttestedEnrollment
from ehsm_kms.config import Settings
from ehsm_kms.core.attest_crypto import certificate_spki
from ehsm_kms.provisioning.attest import (
    PURPOSE_GENERATE_QUOTE,
    Evidence,
    PolicyMismatch,
    ProviderUnavailable,
    ReportDataMismatch,
    bind_report_data,
)
from ehsm_kms.provisioning.attest.tpm2 import Tpm2Policy, Tpm2Provider, Tpm2Verifier, TrustedKey, key_name
from ehsm_kms.server.assemble import build_app
from ehsm_kms.server.tls import self_signed
from ehsm_kms.wire.actions import ATTEST_NODE_PURPOSE
from tests.attest.conftest import PCRS
from tests.attest.swtpm import Swtpm, running_swtpm
from tests.cli.harness import Cli
from tests.live import LiveServer

INDEXES = (0, 1, 2, 3, 4, 5, 6, 7, 16)


@dataclass
class Node:
    server: LiveServer
    cert: Path
    ak_name: str
    pcrs: dict[int, str]

    def policy(self, *, pcr7: str | None = None, ak: str | None = None) -> str:
        """A tpm2 policy (TOML text) of this node's PCR values and AK, one value changed if asked."""
        values = dict(self.pcrs)
        if pcr7 is not None:
            values[7] = pcr7
        lines = ["kind = 'tpm2'", f"trusted_ak = '{ak or self.ak_name}'", "[pcrs.sha256]"]
        lines += [f"{i} = '{v}'" for i, v in sorted(values.items())]
        return "\n".join(lines) + "\n"


def identity(tpm: Swtpm) -> tuple[str, dict[int, str]]:
    """The AK name and the PCR values of a TPM, read with our own provider before the node connects."""
    provider = Tpm2Provider(tpm.tcti, pcrs=PCRS)
    try:
        ak = key_name(provider.identity().ak_public).hex()
        evidence = provider.evidence(bytes(64))
    finally:
        provider.close()
    pcrs = {int(i): v for i, v in evidence.claims["pcrs"]["sha256"].items()}
    return ak, pcrs


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("attested-enroll")
    with running_swtpm(root / "tpm") as tpm:
        ak, pcrs = identity(tpm)
        toml = root / "kms.toml"
        toml.write_text(f'attestation_provider = "tpm2"\ntpm2_tcti = "{tpm.tcti}"\ntpm2_pcrs = "{PCRS}"\n')
        extra = ["--config", str(toml), "--enroll-mode", "open", "--tls-self-signed"]
        server = LiveServer(root / "data", f"sqlite:///{root}/kms.db", extra=extra, tls=True).start()
        try:
            yield Node(server, root / "data" / "tls-cert.pem", ak, pcrs)
        finally:
            server.stop()


def test_the_node_really_quotes_its_pcrs(node: Node) -> None:
    # The fixture's values are the TPM's own; a fresh swtpm has measured nothing, so they are all zero.
    assert sorted(node.pcrs) == list(INDEXES) and set(node.pcrs.values()) == {"00" * 32}


def test_sync_enrollment_succeeds_against_the_nodes_policy(node: Node, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(node.policy())
    with Client(node.server.url, ca_bundle=str(node.cert)) as client:
        made = client.enroll(attest=str(policy))
        assert made.attestation is not None
        assert (made.attestation.kind, made.attestation.status) == ("tpm2", "OK")
        assert made.attestation.measurements["ak"] == node.ak_name
        assert made.attestation.measurements["pcr.sha256.7"] == "00" * 32
        # The credentials are real: the client uses them.
        keyid = client.create_key()
        assert client.decrypt(keyid, client.encrypt(keyid, b"attested")) == b"attested"


def test_async_enrollment_succeeds_and_needs_no_ca_when_attested(node: Node) -> None:
    async def run() -> tuple[str, str]:
        # insecure: the self-signed certificate is not checked by a CA, the evidence vouches for its key.
        async with AsyncClient(node.server.url, insecure=True) as client:
            made = await client.enroll(attest=node.policy())
            assert made.attestation is not None
            return made.appid, (await client.get_version()).version

    appid, version = asyncio.run(run())
    assert appid and version


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_another_pcr_value_is_refused_and_no_credentials_are_given(node: Node, flavour: str) -> None:
    policy = node.policy(pcr7="11" * 32)
    if flavour == "sync":
        with Client(node.server.url, ca_bundle=str(node.cert)) as client:
            with pytest.raises(PolicyMismatch, match="PCR sha256:7 does not have the policy's value"):
                client.enroll(attest=policy)
            assert not client.has_credentials and client.appid is None
        return

    async def run() -> AsyncClient:
        async with AsyncClient(node.server.url, ca_bundle=str(node.cert)) as client:
            with pytest.raises(PolicyMismatch, match="PCR sha256:7"):
                await client.enroll(attest=policy)
            return client

    client = asyncio.run(run())
    assert not client.has_credentials


def test_another_tpms_ak_is_refused(node: Node, other_swtpm: Swtpm) -> None:
    other_ak, _ = identity(other_swtpm)
    with Client(node.server.url, ca_bundle=str(node.cert)) as client:
        with pytest.raises(PolicyMismatch, match="the AK is neither trusted"):
            client.enroll(attest=node.policy(ak=other_ak))
        assert not client.has_credentials


# ---------------------------------------------------------------- a relay with another TLS key
class Relay(http.server.ThreadingHTTPServer):
    """An HTTPS server with a key of its own: it fetches AttestNode evidence from the real node for the client's
    nonce and passes it on, then answers Enroll itself (what a man in the middle would do)."""

    def __init__(self, upstream: str, cert: Path, key: Path) -> None:
        super().__init__(("127.0.0.1", 0), RelayHandler)
        self.upstream = upstream
        self.enrolls = 0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"


class RelayHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Relay

    def do_GET(self) -> None:
        if "Action=AttestNode" in self.path:
            body = httpx.get(self.server.upstream + self.path, verify=False, timeout=30).content
        else:
            self.server.enrolls += 1
            answer = {"code": 200, "message": "successful", "result": {"appid": "relayed", "apikey": "x" * 32}}
            body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_evidence_relayed_from_another_tls_key_is_refused(node: Node, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "relay", "127.0.0.1")
    relay = Relay(node.server.url, cert, key)
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        # The relay's answer is the node's real evidence for this very nonce: only the TLS key differs.
        with Client(relay.url, ca_bundle=str(cert)) as client:
            nonce = b"n" * 32
            relayed = client.attest_node(nonce)
            assert relayed.kind == "tpm2" and json.loads(relayed.evidence)["kind"] == "tpm2"
            with pytest.raises(ReportDataMismatch):
                client.enroll(attest=node.policy())
            assert not client.has_credentials
        assert relay.enrolls == 0  # refused before Enroll was sent
    finally:
        relay.shutdown()
        relay.server_close()
        thread.join(10)


def test_evidence_is_fresh_for_each_nonce(node: Node) -> None:
    with Client(node.server.url, ca_bundle=str(node.cert)) as client:
        first, second = client.attest_node(b"a" * 16), client.attest_node(b"b" * 16)
    quoted = [json.loads(e.evidence)["data"] for e in (first, second)]
    assert quoted[0] != quoted[1] and all(base64.b64decode(q) for q in quoted)


# ---------------------------------------------------------------- the CLI
def test_cli_enroll_attest(node: Node, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config", node.server.url)
    good, other = tmp_path / "good.toml", tmp_path / "other.toml"
    good.write_text(node.policy())
    other.write_text(node.policy(pcr7="22" * 32))
    tls = ("--ca-bundle", str(node.cert))
    made = cli.json("enroll", "--url", cli.url, *tls, "--attest", str(good))
    assert made["attestation"]["kind"] == "tpm2" and made["attestation"]["ak"] == node.ak_name
    assert len(made["apikey"]) == 32
    saved = cli.ok("enroll", "--url", cli.url, *tls, "--attest", str(good), "--save-profile", "attested")
    assert "attested: tpm2 OK" in saved.stdout
    assert cli.json("key", "list", "--profile", "attested") == []

    refused = cli.run("enroll", "--url", cli.url, *tls, "--attest", str(other), "--save-profile", "refused")
    assert refused.exit_code == errors.EXIT_CRYPTO and "PCR sha256:7 does not have the policy's value" in refused.stderr
    assert "apikey" not in refused.stdout and "refused" not in cli.config_file.read_text()

    # As an operator runs it: the same refusal, its exit code, no credentials, no traceback.
    done = cli.spawn("enroll", "--url", cli.url, *tls, "--attest", str(other), "--json")
    assert done.returncode == errors.EXIT_CRYPTO and done.stdout == b"" and b"Traceback" not in done.stderr
    assert b"does not match the policy" in done.stderr or b"PCR sha256:7" in done.stderr


# ---------------------------------------------------------------- the action in-process (the real app, no socket)
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_attest_node_in_process(swtpm: Swtpm, tmp_path: Path, tls: bool) -> None:
    """The action's own answer through ``httpx.ASGITransport``: evidence bound to the configured certificate's key,
    and the clear refusal of a node that serves no certificate."""
    cert, key = self_signed(tmp_path / "tls", "127.0.0.1")
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        store_url=f"sqlite:///{tmp_path}/kms.db",
        core_mode="inprocess",
        sealer="passphrase",
        attestation_provider="tpm2",
        tpm2_tcti=swtpm.tcti,
        tpm2_pcrs=PCRS,
        **({"tls_cert": str(cert), "tls_key": str(key)} if tls else {}),
    ).validate()
    app = build_app(settings, secret=b"in-process attest passphrase, not a real one")
    ak, _ = identity(swtpm)
    nonce = b"an in-process nonce, 32 bytes.."

    async def run() -> Any:
        await app.startup()
        try:
            async with AsyncClient("http://kms.test", transport=httpx.ASGITransport(app=app)) as client:
                if not tls:
                    with pytest.raises(ProviderUnavailable, match="serves no TLS certificate"):
                        await client.attest_node(nonce)
                    return None
                return await client.attest_node(nonce)
        finally:
            await app.shutdown()

    found = asyncio.run(run())
    if not tls:
        return
    spki = certificate_spki(cert.read_bytes())
    expected = bind_report_data(nonce, spki, purpose=ATTEST_NODE_PURPOSE)
    policy = Tpm2Policy(
        pcrs={"sha256": dict.fromkeys(INDEXES, "00" * 32)}, trusted_aks=(TrustedKey(bytes.fromhex(ak)),)
    )
    verdict = Tpm2Verifier().verify(Evidence.decode(found.evidence), expected, policy)
    assert verdict.measurements["ak"] == ak
    # The same evidence is not GenerateQuote's, nor bound to no channel.
    for other in (
        bind_report_data(nonce, spki, purpose=PURPOSE_GENERATE_QUOTE),
        bind_report_data(nonce, purpose=ATTEST_NODE_PURPOSE),
    ):
        with pytest.raises(ReportDataMismatch):
            Tpm2Verifier().verify(Evidence.decode(found.evidence), other, policy)


def test_credentials_from_another_connection_are_not_accepted(node: Node) -> None:
    """The check behind "enroll on the SAME connection": an Enroll answer that came over another TLS session than
    the attested one is refused, even from the same node."""
    check = AttestedEnrollment.start(node.server.url + "/ehsm", node.policy(), None)
    query = {"Action": "AttestNode", "nonce": base64.b64encode(check.nonce).decode()}
    trust = ssl.create_default_context(cafile=str(node.cert))
    with httpx.Client(verify=trust) as first, httpx.Client(verify=trust) as second:
        attested = first.get(node.server.url + "/ehsm", params=query)
        result = attested.json()["result"]
        check.check_evidence(attested, NodeEvidence(result["kind"], base64.b64decode(result["evidence"])))
        assert check.verdict is not None and check.verdict.kind == "tpm2"
        other = second.get(node.server.url + "/ehsm", params={"Action": "Enroll"})
        made = other.json()["result"]
        with pytest.raises(AttestationRefused, match="another connection"):
            check.accept(other, Enrollment(made["appid"], made["apikey"]))
        same = first.get(node.server.url + "/ehsm", params={"Action": "Enroll"})
        again = same.json()["result"]
        accepted = check.accept(same, Enrollment(again["appid"], again["apikey"]))
        assert accepted.appid == again["appid"] and accepted.attestation == check.verdict
