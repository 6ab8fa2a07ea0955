"""Operating a live node: TLS, health and metrics, redacted logs, graceful shutdown."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.live import ROOT, KmsClient, LiveServer, b64, running

ED = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}


def test_health_metrics_and_logs_without_secrets(tmp_path: Path) -> None:
    with running(tmp_path, f"sqlite:///{tmp_path}/kms.db") as server:
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
        assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}
        client = KmsClient(server.url)
        try:
            client.enroll()
            keyid = client.ok("CreateKey", ED)["keyid"]
            secret_text = b"attack at dawn, the password is hunter2"
            ct = client.ok("Encrypt", {"keyid": keyid, "plaintext": b64(secret_text), "aad": b64(b"aad-marker")})
            made = client.ok("GenerateDataKey", {"keyid": keyid, "keylen": 32})
            resp = client.http.post("/ehsm/?Action=ListKey", json=client.signed_body(None))
            assert resp.headers["x-request-id"]
            metrics = httpx.get(server.url + "/metrics").text
            assert 'ehsm_requests_total{action="Encrypt",code="200"} 1.0' in metrics
            assert 'ehsm_request_seconds_count{action="CreateKey"} 1.0' in metrics
            samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
            core_calls, store_calls = (
                float(samples["ehsm_core_call_seconds_count"]),
                float(samples["ehsm_store_call_seconds_count"]),
            )
            assert core_calls >= 3 and store_calls >= 5, (core_calls, store_calls)
            assert float(samples["ehsm_core_call_seconds_sum"]) > 0
            apikey = client.apikey
        finally:
            client.close()
        server.stop()
        log = server.log()
    assert "enroll_mode open" in log and "request id=" in log and "action=Encrypt" in log
    for secret in (
        apikey,
        b64(secret_text),
        "aad-marker",
        b64(b"aad-marker"),
        ct["ciphertext"],
        made["plaintext"],
        "test passphrase",
    ):
        assert secret not in log, f"a secret reached the log: {secret[:8]}..."


def test_tls_self_signed(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, f"sqlite:///{tmp_path}/kms.db", extra=["--tls-self-signed"], tls=True).start()
    try:
        cert = tmp_path / "tls-cert.pem"
        assert (tmp_path / "tls-key.pem").stat().st_mode & 0o777 == 0o600
        ctx = ssl.create_default_context(cafile=str(cert))
        resp = httpx.get(server.url + "/ehsm?Action=GetVersion", verify=ctx)
        assert resp.json()["result"]["version"] == "0.3.2"
        with pytest.raises(httpx.HTTPError):  # not trusted without the CA: verification is on
            httpx.get(server.url + "/healthz")
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{server.port}/healthz")
    finally:
        server.stop()


def test_graceful_shutdown_finishes_requests_in_flight(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, f"sqlite:///{tmp_path}/kms.db").start()
    client = KmsClient(server.url)
    try:
        client.enroll()
        slow = {"keyspec": "EH_RSA_4096", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_SIGN_VERIFY"}
        results: list[dict[str, object]] = []
        worker = threading.Thread(target=lambda: results.append(client.call("CreateKey", slow)))
        worker.start()
        time.sleep(0.3)  # RSA-4096 generation is under way in the core
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        worker.join(60)
        assert results and results[0]["code"] == 200, results
        # uvicorn re-raises the signal once its graceful shutdown is done, so the exit status names SIGTERM.
        assert server.proc.wait(60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log()
    finally:
        client.close()
        server.stop()


def test_no_access_log_drops_the_request_lines_but_not_the_audit_records(tmp_path: Path) -> None:
    with running(tmp_path, f"sqlite:///{tmp_path}/kms.db", "--no-access-log") as server:
        client = KmsClient(server.url)
        try:
            assert client.enroll()["code"] == 200
            keyid = client.ok("CreateKey", ED)["keyid"]
            assert client.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"quiet")})["ciphertext"]
        finally:
            client.close()
        server.stop()
        log = server.log()
    assert "enroll_mode open" in log  # the node still logs what it does
    assert "request id=" not in log
    exported = subprocess.run(
        [sys.executable, "-m", "ehsm_kms.cli.main", "admin", "export-audit", "--data-dir", str(tmp_path),
         "--store-url", f"sqlite:///{tmp_path}/kms.db"],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ).stdout  # fmt: skip
    actions = [json.loads(line)["action"] for line in exported.splitlines() if line.strip()]
    assert {"Enroll", "CreateKey", "Encrypt"} <= set(actions)
