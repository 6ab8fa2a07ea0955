"""A real root, worker and dkeycache (subprocesses, TLS on loopback, one swtpm per machine).

The tests run in order on one module-scoped cluster; those that stop a process start it again before they end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ehsm_kms import errors
from ehsm_kms.core import dk
from ehsm_kms.core.ringfetch import fetch_ring
from ehsm_kms.core.ringwire import EphemeralKey
from ehsm_kms.core.sealers.tpm2 import Tpm2Sealer
from ehsm_kms.provisioning.attest import Evidence, bind_report_data
from ehsm_kms.provisioning.attest.none import NoneProvider
from ehsm_kms.provisioning.audit import verify_audit
from ehsm_kms.provisioning.dkprotocol import (
    PURPOSE,
    Activation,
    Challenge,
    Endpoint,
    Identity,
    Proof,
    Refused,
    Release,
    Session,
    client_context,
    fetch_remote,
)
from tests.attest.test_tpm2 import extend_pcr16
from tests.live import ROOT
from tests.provisioning.conftest import Cluster
from tests.provisioning.procs import DkServerProc, flush_transient, start_cache, tpm2_evidence, wait_ring

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-m", "ehsm_kms.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout, check=False)  # fmt: skip


def session(server: DkServerProc) -> Session:
    return Session(Endpoint.parse(server.endpoint), client_context([server.cert]), timeout=15.0)


def audit_of(server: DkServerProc, peer: str, *, timeout: float = 10.0) -> dict[str, object]:
    """The audit record of the connection from ``peer`` (the server writes it before or just after answering)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in (server.data_dir / "audit.jsonl").read_text().splitlines():
            record: dict[str, object] = json.loads(line)
            if record.get("peer") == peer:
                return record
        time.sleep(0.05)
    raise AssertionError(f"no audit record for {peer}")


def peer_of(s: Session) -> str:
    host, port = s.sock.getsockname()[:2]
    return f"{host}:{port}"


def assert_refused_and_audited(server: DkServerProc, s: Session, release_error: str, reason: str) -> None:
    peer = peer_of(s)
    assert reason in release_error
    record = audit_of(server, peer)
    assert record["event"] == "refuse"
    assert reason in str(record["reason"])
    assert "measurements" not in record and "sealed" not in json.dumps(record)


def prove_with(s: Session, evidence: Evidence) -> str:
    """The server's refusal of ``evidence`` (the test fails if it releases anything)."""
    release = s.prove(evidence)
    assert not release.ok and release.sealed is None and release.dk_version == 0
    return release.error


# ---------------------------------------------------------------- the happy path
def test_the_cache_serves_the_roots_ring_fetched_through_the_worker(cluster: Cluster) -> None:
    ring = wait_ring(cluster.socket)
    assert ring == cluster.root_ring()
    root_records = [json.loads(x) for x in (cluster.root.data_dir / "audit.jsonl").read_text().splitlines()]
    to_worker = [r for r in root_records if r["event"] == "release" and r["role"] == "worker"]
    assert to_worker and to_worker[-1]["kind"] == "tpm2" and to_worker[-1]["attested"] is True
    measurements = to_worker[-1]["measurements"]
    assert measurements["pcr.sha256.16"] == "00" * 32 and len(measurements["ek"]) == 68
    worker_records = [json.loads(x) for x in (cluster.worker.data_dir / "audit.jsonl").read_text().splitlines()]
    assert any(r["event"] == "release" and r["role"] == "cache" for r in worker_records)


def test_a_trusted_machine_gets_the_ring_from_root_and_worker(cluster: Cluster) -> None:
    provider = cluster.provider()
    try:
        for server in (cluster.root, cluster.worker):
            ring = fetch_remote(Endpoint.parse(server.endpoint), client_context([server.cert]), role="cache",
                                provider=provider)  # fmt: skip
            assert ring == cluster.root_ring()
    finally:
        provider.close()


def test_the_server_certificate_is_pinned(cluster: Cluster) -> None:
    provider = cluster.provider()
    try:
        with pytest.raises(errors.EhsmError, match="TLS with the dkeyserver"):
            fetch_remote(Endpoint.parse(cluster.root.endpoint), client_context([cluster.worker.cert]), role="cache",
                         provider=provider)  # fmt: skip
    finally:
        provider.close()


def test_the_processes_that_hold_the_ring_are_hardened(cluster: Cluster) -> None:
    for proc in (cluster.root, cluster.worker, cluster.cache):
        assert proc.proc is not None
        pid = proc.proc.pid
        limits = Path(f"/proc/{pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], core  # soft and hard limit
        locked = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmLck"))
        if "mlockall" in proc.log():  # refused by this system: the process said so
            assert "protection not available: mlockall" in proc.log()
        else:
            assert int(locked.split()[1]) > 0, locked
        assert "PR_SET_DUMPABLE" not in proc.log()


# ---------------------------------------------------------------- refusals: no DK, and an audit record each
def test_no_evidence_is_refused(cluster: Cluster) -> None:
    provider = cluster.provider()
    try:
        with session(cluster.root) as s:
            s.hello("cache", "tpm2", EphemeralKey().public)
            s.activate(provider)
            error = prove_with(s, Evidence("tpm2", b"", {}))  # an empty quote, no claims
            assert_refused_and_audited(cluster.root, s, error, "cannot be parsed")
        with session(cluster.root) as s:
            s.hello("cache", "tpm2", EphemeralKey().public)
            s.activate(provider)
            s.send(Proof(evidence=b""))  # no evidence at all
            release = s.receive(Release)
            assert not release.ok and release.sealed is None
            assert_refused_and_audited(cluster.root, s, release.error, "not JSON")
        with session(cluster.root) as s:  # a client that stops after its hello
            s.hello("cache", "tpm2", EphemeralKey().public)
            peer = peer_of(s)
        assert "before proving anything" in str(audit_of(cluster.root, peer)["reason"])
    finally:
        provider.close()


def test_evidence_of_a_measurement_not_in_the_policy_is_refused(cluster: Cluster) -> None:
    extend_pcr16(cluster.machines.extended)
    provider = cluster.provider(cluster.machines.extended)
    try:
        key = EphemeralKey()
        with session(cluster.root) as s:
            nonce = s.hello("cache", "tpm2", key.public)
            s.activate(provider)
            error = prove_with(s, provider.evidence(bind_report_data(nonce, key.spki, purpose=PURPOSE)))
            assert_refused_and_audited(cluster.root, s, error, "PCR sha256:16 does not have the policy's value")
    finally:
        provider.close()


def test_a_tpm_whose_ek_no_policy_trusts_is_refused(cluster: Cluster) -> None:
    provider = cluster.provider(cluster.machines.stranger)
    try:
        with pytest.raises(Refused, match="neither trusted nor activated"):
            fetch_remote(Endpoint.parse(cluster.root.endpoint), client_context([cluster.root.cert]), role="cache",
                         provider=provider)  # fmt: skip
    finally:
        provider.close()


def test_a_wrong_activation_answer_is_refused(cluster: Cluster) -> None:
    provider = cluster.provider()
    try:
        with session(cluster.root) as s:
            s.hello("cache", "tpm2", EphemeralKey().public)
            s.send(Identity(identity=provider.identity().encode()))
            assert s.receive(Challenge).challenge
            s.send(Activation(answer=os.urandom(32)))
            release = s.receive(Release)
            assert not release.ok and release.sealed is None
            assert_refused_and_audited(cluster.root, s, release.error, "credential activation failed")
    finally:
        provider.close()


def test_evidence_bound_to_another_key_is_refused(cluster: Cluster) -> None:
    provider = cluster.provider()
    try:
        key_a, key_b = EphemeralKey(), EphemeralKey()
        with session(cluster.root) as s:
            nonce = s.hello("cache", "tpm2", key_b.public)  # the ring would be sealed to B ...
            s.activate(provider)
            evidence = provider.evidence(bind_report_data(nonce, key_a.spki, purpose=PURPOSE))  # ... proof names A
            error = prove_with(s, evidence)
            assert_refused_and_audited(cluster.root, s, error, "not bound to this request")
    finally:
        provider.close()


def test_replayed_evidence_of_an_earlier_connection_is_refused(cluster: Cluster) -> None:
    provider = cluster.provider()
    try:
        key = EphemeralKey()
        with session(cluster.root) as s:
            nonce = s.hello("cache", "tpm2", key.public)
            s.activate(provider)
            recorded = provider.evidence(bind_report_data(nonce, key.spki, purpose=PURPOSE))
            first = s.prove(recorded)
            assert first.ok and first.sealed is not None  # genuine the first time
        with session(cluster.root) as s:  # the same key and evidence again: the nonce is new
            s.hello("cache", "tpm2", key.public)
            s.activate(provider)
            error = prove_with(s, recorded)
            assert_refused_and_audited(cluster.root, s, error, "not bound to this request")
    finally:
        provider.close()


def test_none_evidence_is_refused_without_the_allow_flag(cluster: Cluster) -> None:
    # The root has a 'none' policy but was not started with --allow-unattested.
    assert "a 'none' policy is ignored" in cluster.root.log()
    with pytest.raises(Refused, match="unattested"):
        fetch_remote(Endpoint.parse(cluster.root.endpoint), client_context([cluster.root.cert]), role="cache",
                     provider=NoneProvider(allow_unattested=True))  # fmt: skip
    with session(cluster.root) as s:
        with pytest.raises(Refused, match="unattested") as info:
            s.hello("cache", "none", EphemeralKey().public)
        assert_refused_and_audited(cluster.root, s, info.value.message or "", "unattested")


def test_an_oversized_message_is_refused(cluster: Cluster) -> None:
    with session(cluster.root) as s:
        s.hello("cache", "tpm2", EphemeralKey().public)
        s.sock.sendall((1 << 24).to_bytes(4, "big"))
        with pytest.raises(Refused, match="too large") as info:
            s.receive(Proof)
        assert_refused_and_audited(cluster.root, s, info.value.message or "", "too large")


# ---------------------------------------------------------------- rotation, audit
def test_rotation_on_the_root_reaches_the_worker_and_the_cache(cluster: Cluster) -> None:
    before = cluster.root_ring().current_version
    done = cli("dkeyserver", "rotate", "--data-dir", str(cluster.root.data_dir))
    assert done.returncode == 0, done.stderr
    assert f"version {before + 1} is current" in done.stdout
    ring = wait_ring(cluster.socket, min_version=before + 1, timeout=20)
    assert ring == cluster.root_ring()
    assert ring.versions == tuple(range(1, before + 2))
    status = cli("dkeyserver", "status", "--data-dir", str(cluster.worker.data_dir))
    assert f"domain-key version {before + 1}" in status.stdout


def test_the_release_audit_verifies_and_shows_a_removed_line(cluster: Cluster, tmp_path: Path) -> None:
    ok = cli("dkeyserver", "verify-audit", "--data-dir", str(cluster.root.data_dir))
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("audit.jsonl", "audit.head"):
        shutil.copy(cluster.root.data_dir / name, copy / name)
    lines = (copy / "audit.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) > 3
    (copy / "audit.jsonl").write_text("".join(lines[:2] + lines[3:]))
    report = verify_audit(copy)
    assert not report.intact and any("seq 3" in b for b in report.breaks)
    broken = cli("dkeyserver", "verify-audit", "--data-dir", str(copy))
    assert broken.returncode == 1 and "BROKEN" in broken.stdout


# ---------------------------------------------------------------- faults
def test_with_the_root_down_the_worker_and_the_cache_keep_serving(cluster: Cluster) -> None:
    ring = cluster.root_ring()
    seen = len(cluster.worker.log())
    cluster.root.stop()
    time.sleep(1.5)  # three refresh intervals of the worker and the cache
    assert f"fetching the domain key from {cluster.root.endpoint} failed" in cluster.worker.log()[seen:]
    assert wait_ring(cluster.socket, timeout=5) == ring
    provider = cluster.provider()
    try:
        got = fetch_remote(Endpoint.parse(cluster.worker.endpoint), client_context([cluster.worker.cert]),
                           role="cache", provider=provider)  # fmt: skip
        assert got == ring
    finally:
        provider.close()
    cluster.start_root()
    assert wait_ring(cluster.socket, timeout=10) == ring


def test_the_cache_killed_and_restarted_fetches_again(cluster: Cluster) -> None:
    ring = cluster.root_ring()
    cluster.cache.kill()
    assert cluster.socket.exists()  # the stale socket file stays behind
    with pytest.raises(errors.CoreUnavailable):
        fetch_ring(str(cluster.socket), timeout=2)
    assert flush_transient(cluster.machines.cache) == 2  # its EK and AK, as /dev/tpmrm0 would on the exit
    cluster.restart_cache()
    assert wait_ring(cluster.socket, timeout=20) == ring


def test_a_cache_started_while_its_server_is_down_waits_then_gets_the_ring(cluster: Cluster) -> None:
    ring = cluster.root_ring()
    cluster.worker.stop()
    second = cluster.socket.with_name("second.sock")
    cache = start_cache(second, [cluster.worker], tpm2_evidence(cluster.machines.client),
                        log_path=cluster.base / "second-cache.log")  # fmt: skip
    try:
        with pytest.raises(errors.CoreUnavailable, match="no domain key yet"):
            fetch_ring(str(second))
        assert wait_ring(cluster.socket, timeout=5) == ring  # the first cache keeps serving meanwhile
        deadline = time.monotonic() + 10
        while cache.log().count("next domain-key fetch in") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cache.log().count("next domain-key fetch in") >= 3  # it retries, with backoff
        cluster.start_worker()
        assert wait_ring(second, timeout=20) == ring
    finally:
        cache.stop()


def test_the_cache_refuses_another_uid(cluster: Cluster) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another uid (setuid 65534)")
    wait_ring(cluster.socket)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: setuid only, so its gid stays 0 and the 0660 socket (0750 directory) is reachable
        code = 1
        try:
            os.close(read_end)
            os.setuid(65534)
            try:
                fetch_ring(str(cluster.socket), timeout=5)
                message, code = "GOT A RING", 0
            except errors.CoreUnavailable as exc:
                message, code = exc.message or "", 3
            os.write(write_end, message.encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3, message
    assert "refused: not allowed" in message
    assert "uid 65534 is not allowed" in cluster.cache.log()


def test_the_root_recovers_its_lost_sealed_file_from_a_worker(cluster: Cluster) -> None:
    sealer = Tpm2Sealer(cluster.machines.root.tcti)
    sealed = cluster.root.data_dir / "dk.sealed"
    ring = cluster.root_ring()
    cluster.root.stop()
    lost = sealed.with_name("dk.sealed.lost")
    sealed.rename(lost)
    args = (
        "dkeyserver", "recover", "--data-dir", str(cluster.root.data_dir),
        "--from", cluster.worker.endpoint, "--from-ca", str(cluster.worker.cert),
        "--sealer", "tpm2", "--sealer-tcti", cluster.machines.root.tcti, *tpm2_evidence(cluster.machines.root),
    )  # fmt: skip
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert f"recovered domain-key version {ring.current_version}" in done.stdout
    assert dk.load_or_create(sealer, sealed, create=False) == ring
    assert sealed.read_bytes() != lost.read_bytes()  # sealed afresh, same ring
    worker_records = [json.loads(x) for x in (cluster.worker.data_dir / "audit.jsonl").read_text().splitlines()]
    assert any(r["event"] == "release" and r["role"] == "root" for r in worker_records)
    again = cli(*args)
    assert again.returncode == errors.EXIT_USAGE and "exists" in again.stderr
    cluster.start_root()
    assert wait_ring(cluster.socket, timeout=10) == ring
