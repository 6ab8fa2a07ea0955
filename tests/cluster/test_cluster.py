"""A cluster on loopback: dkeyserver root + worker, a dkeycache, KMS nodes in cluster mode, one PostgreSQL.

Every part is a real process: the dkeyserver root seals the DK with a (software) TPM, the worker and the dkeycache
prove their machines with tpm2 evidence from swtpm, the nodes' isolated cores fetch the DK from the dkeycache over
its Unix socket. The tests run in file order on one module-scoped cluster; each leaves it running as it found it.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster_node.test_rewrap import Traffic, dk_versions
from tests.live import ROOT, KmsClient, LiveServer, b64
from tests.pg import PgRun
from tests.provisioning.conftest import Cluster
from tests.provisioning.procs import flush_transient, start_cache, tpm2_evidence, wait_ring

pytestmark = pytest.mark.postgres

AES = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}
EC = {"keyspec": "EH_EC_P256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_SIGN_VERIFY"}
REFRESH_MS = "500"


def node(base: Path, name: str, store_url: str, socket: Path) -> LiveServer:
    return LiveServer(base / name, store_url, extra=["--run-mode", "cluster", "--dkeycache-socket", str(socket)])


def readyz(server: LiveServer) -> int:
    try:
        return httpx.get(server.url + "/readyz", timeout=2.0).status_code
    except httpx.HTTPError:
        return 0


def wait_until(predicate: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def core_pid(server: LiveServer) -> int:
    assert server.proc is not None
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


class Nodes:
    def __init__(self, a: LiveServer, b: LiveServer, store_url: str) -> None:
        self.a, self.b, self.store_url = a, b, store_url
        self.ca = KmsClient(a.url)
        assert self.ca.enroll()["code"] == 200
        self.cb = KmsClient(b.url, self.ca.appid, self.ca.apikey)


@pytest.fixture(scope="module")
def nodes(cluster: Cluster, pg_run: PgRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    os.environ["EHSM_KMS_DK_REFRESH_INTERVAL_MS"] = REFRESH_MS
    base = tmp_path_factory.mktemp("nodes")
    store_url = f"{pg_run.dsn}?schema={pg_run.new_schema()}"
    wait_ring(cluster.socket)
    a = node(base, "a", store_url, cluster.socket).start()
    b = node(base, "b", store_url, cluster.socket).start()
    nodes = None
    try:
        nodes = Nodes(a, b, store_url)
        yield nodes
    finally:
        if nodes is not None:
            nodes.ca.close()
            nodes.cb.close()
        b.stop()
        a.stop()
        os.environ.pop("EHSM_KMS_DK_REFRESH_INTERVAL_MS", None)


def round_trips(nodes: Nodes) -> None:
    """A key made on each node encrypts there and decrypts on the other; a signature made on one verifies on
    the other."""
    for here, there in ((nodes.ca, nodes.cb), (nodes.cb, nodes.ca)):
        keyid = here.ok("CreateKey", AES)["keyid"]
        ct = here.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"across nodes")})["ciphertext"]
        assert there.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == b64(b"across nodes")
        ec = here.ok("CreateKey", EC)["keyid"]
        signing = {"keyid": ec, "message": b64(b"m"), "message_type": "EH_RAW", "digest_mode": "EH_SHA_256",
                   "padding_mode": "EH_PAD_NONE"}  # fmt: skip
        sig = here.ok("Sign", signing)["signature"]
        assert there.ok("Verify", {**signing, "signature": sig}) == {"result": True}


def test_a_key_made_on_one_node_is_used_on_the_other(nodes: Nodes, cluster: Cluster) -> None:
    round_trips(nodes)
    # Both cores hold the root's ring: every node-side ciphertext opens on the other node, and the store holds
    # only blobs wrapped by the root's current DK version.
    assert set(dk_versions(nodes.store_url)) == {cluster.root_ring().current_version}


def test_dkeyserver_down_nodes_serve_and_a_new_node_waits_until_it_is_back(
    nodes: Nodes, cluster: Cluster, tmp_path: Path
) -> None:
    keyid = nodes.ca.ok("CreateKey", AES)["keyid"]
    before = nodes.ca.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"before the outage")})["ciphertext"]
    cluster.worker.stop()
    cluster.root.stop()
    try:
        round_trips(nodes)
        # A third node on another machine: its own dkeycache (another TPM's evidence) can reach no dkeyserver.
        socket = Path(str(cluster.socket).replace("cache.sock", "cache-c.sock"))
        cache_c = start_cache(socket, [cluster.worker], tpm2_evidence(cluster.machines.client),
                              log_path=tmp_path / "cache-c.log")  # fmt: skip
        c = node(tmp_path, "c", nodes.store_url, socket)
        try:
            _start_without_waiting(c)
            wait_until(lambda: readyz(c) == 503, "the waiting node answers /readyz 503")
            for _ in range(20):  # and keeps waiting while no dkeyserver answers (2 s)
                assert readyz(c) == 503
                time.sleep(0.1)
            assert httpx.get(c.url + "/healthz", timeout=5.0).status_code == 200
            waiting = httpx.get(c.url + "/ehsm", params={"Action": "Enroll"}, timeout=5.0).json()
            assert waiting["code"] == 500 and "waiting for the domain key" in waiting["message"]
            cluster.start_root()
            cluster.start_worker()
            wait_until(lambda: readyz(c) == 200, "the new node becomes ready once the dkeyserver is back", 90)
            cc = KmsClient(c.url, nodes.ca.appid, nodes.ca.apikey)
            try:
                assert cc.ok("Decrypt", {"keyid": keyid, "ciphertext": before})["plaintext"] == b64(
                    b"before the outage"
                )
            finally:
                cc.close()
        finally:
            c.stop()
            cache_c.stop()
    finally:
        if not cluster.root.running:
            cluster.start_root()
        if not cluster.worker.running:
            cluster.start_worker()


def _start_without_waiting(server: LiveServer) -> None:
    """Start a node without waiting for /readyz (it is expected to wait for its domain key)."""
    server.data_dir.mkdir(parents=True, exist_ok=True)
    server.log_path = server.data_dir / "server.log"
    env = dict(os.environ, EHSM_KMS_TEST_PASSPHRASE="unused in cluster mode")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    with open(server.log_path, "wb") as log:
        server.proc = subprocess.Popen(server.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wait_until(lambda: readyz(server) in (200, 503), "the node answers /readyz at all", 60)


def test_dkeycache_killed_nodes_keep_serving_and_a_killed_core_comes_back(nodes: Nodes, cluster: Cluster) -> None:
    cluster.cache.kill()
    flush_transient(cluster.machines.cache)  # what /dev/tpmrm0 does for a dead process (tests/provisioning)
    try:
        round_trips(nodes)
        # A's core killed while no cache runs: the supervisor restarts it and it waits for the DK.
        old = core_pid(nodes.a)
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: readyz(nodes.a) == 503, "node A waits for the DK after its core was killed")
        assert nodes.cb.ok("CreateKey", AES)["keyid"]  # B is not affected
    finally:
        cluster.restart_cache()
    wait_until(lambda: readyz(nodes.a) == 200, "node A is ready again once the dkeycache is back")
    assert core_pid(nodes.a) != old
    round_trips(nodes)


def test_dk_rotation_and_online_rewrap_while_traffic_continues(nodes: Nodes, cluster: Cluster) -> None:
    keys = [nodes.ca.ok("CreateKey", AES)["keyid"] for _ in range(3)]
    old = {k: nodes.ca.ok("Encrypt", {"keyid": k, "plaintext": b64(b"old")})["ciphertext"] for k in keys}
    start_version = cluster.root_ring().current_version
    traffic = Traffic([nodes.a.url, nodes.b.url], nodes.ca.appid, nodes.ca.apikey, keys, old)
    traffic.start()
    try:
        wait_until(lambda: traffic.requests > 30, "traffic is flowing")
        rotated = _cli("dkeyserver", "rotate", "--data-dir", str(cluster.root.data_dir))
        assert rotated.returncode == 0, rotated.stderr
        new_version = start_version + 1
        assert cluster.root_ring().current_version == new_version
        wait_ring(cluster.socket, min_version=new_version)
        # Both nodes follow (periodic refresh every 0.5 s; on demand when a blob names the new version).
        wait_until(lambda: _new_blobs_use(nodes, new_version), "new keys are wrapped under the new DK version")
        count = traffic.requests
        rewrap = _cli("admin", "rewrap", *_node_args(nodes, cluster))
        assert rewrap.returncode == 0, rewrap.stdout + rewrap.stderr
        wait_until(lambda: traffic.requests > count + 30, "traffic continued during and after the rewrap")
    finally:
        traffic.stop_event.set()
        traffic.join(60)
    assert not traffic.failures, traffic.failures[:5]
    assert traffic.requests > 60
    check = _cli("admin", "rewrap", "--check", *_node_args(nodes, cluster))
    assert check.returncode == 0, check.stdout + check.stderr
    assert set(dk_versions(nodes.store_url)) == {new_version}
    for k in keys:  # what was encrypted before the rotation still decrypts on both nodes
        for client in (nodes.ca, nodes.cb):
            assert (
                client.ok("Decrypt", {"keyid": k, "ciphertext": old[k]})["plaintext"]
                == base64.b64encode(b"old").decode()
            )


def _new_blobs_use(nodes: Nodes, version: int) -> bool:
    for client in (nodes.ca, nodes.cb):
        client.ok("CreateKey", AES)
    counts = dk_versions(nodes.store_url)
    return version in counts


def _node_args(nodes: Nodes, cluster: Cluster) -> list[str]:
    return ["--run-mode", "cluster", "--dkeycache-socket", str(cluster.socket), "--store-url", nodes.store_url,
            "--data-dir", str(nodes.a.data_dir)]  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "ehsm_kms.cli.main", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=180, check=False,
    )  # fmt: skip
