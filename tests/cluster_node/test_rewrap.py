"""Domain-key rotation and the online rewrap: under traffic in cluster mode (no request fails, no blob is left
under the old version), resumed after a kill, compare-and-set against a concurrent change, and in single mode
(``admin rotate-dk`` + ``admin rewrap``) across a restart of the node."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ehsm_kms import errors
from ehsm_kms.config import Settings
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.server.assemble import build_node
from ehsm_kms.service import admin, apps, rewrap
from ehsm_kms.service.node import Node
from ehsm_kms.storage import open_store
from ehsm_kms.storage.rewrap_base import BLOB_KINDS, WrappedBlob
from tests.cluster_node.conftest import Caller, admin_credential
from tests.cluster_node.standin import StandInCache
from tests.live import PASSPHRASE_ENV, ROOT, KmsClient, LiveServer

AES = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}
LIVE_PASSPHRASE = "test passphrase, not a real one"  # what tests.live gives its servers
NONE_LEFT = dict.fromkeys(BLOB_KINDS, 0)
# Every DK-wrapped column, read with plain SQL (not through the store methods under test).
BLOB_COLUMNS = [
    ("key_versions", "blob"),
    ("apps", "apikey_blob"),
    ("secret_default_keys", "blob"),
    ("admin_credential", "blob"),
    ("import_tokens", "wrapping_blob"),
]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, **{PASSPHRASE_ENV: LIVE_PASSPHRASE}, **(env or {}))
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), full.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "ehsm_kms.cli.main", "admin", *args],
        capture_output=True, text=True, env=full, cwd=ROOT, timeout=timeout, check=False,
    )  # fmt: skip


def dk_versions(store_url: str) -> dict[int, int]:
    """How many blobs (over every DK-wrapped column) are under each DK version, by plain SQL."""
    counts: dict[int, int] = {}
    if store_url.startswith("sqlite:///"):
        conn = sqlite3.connect(store_url[len("sqlite:///") :])
        try:
            rows = [r for t, c in BLOB_COLUMNS for r in conn.execute(f"SELECT {c} FROM {t}").fetchall()]
        finally:
            conn.close()
    else:
        parts = urlsplit(store_url)
        schema = dict(parse_qsl(parts.query))["schema"]
        dsn = urlunsplit(parts._replace(query=""))
        with psycopg.connect(dsn, options=f"-c search_path={schema}") as pg:
            rows = [r for t, c in BLOB_COLUMNS for r in pg.execute(f"SELECT {c} FROM {t}").fetchall()]
    for (blob,) in rows:
        if len(blob) >= 37:
            version = int.from_bytes(bytes(blob)[5:9], "big")
            counts[version] = counts.get(version, 0) + 1
    return counts


def store_args(data_dir: Path, store_url: str) -> list[str]:
    return ["--data-dir", str(data_dir), "--store-url", store_url]


class Traffic(threading.Thread):
    """A client that keeps encrypting on one node and decrypting on the other (and decrypting what it encrypted
    before the rotation), alternating the nodes, until stopped."""

    def __init__(self, urls: list[str], appid: str, apikey: str, keys: list[str], old: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.clients = [KmsClient(url, appid, apikey) for url in urls]
        self.keys, self.old = keys, old
        self.stop_event = threading.Event()
        self.requests = 0
        self.failures: list[Any] = []

    def run(self) -> None:
        try:
            i = 0
            while not self.stop_event.is_set():
                keyid = self.keys[i % len(self.keys)]
                here, there = self.clients[i % 2], self.clients[(i + 1) % 2]
                plain = _b64(f"message {i}".encode())
                enc = here.call("Encrypt", {"keyid": keyid, "plaintext": plain})
                self.requests += 1
                if enc["code"] != 200:
                    self.failures.append(("Encrypt", enc))
                    continue
                dec = there.call("Decrypt", {"keyid": keyid, "ciphertext": enc["result"]["ciphertext"]})
                old = here.call("Decrypt", {"keyid": keyid, "ciphertext": self.old[keyid]})
                self.requests += 2
                if dec.get("result", {}).get("plaintext") != plain:
                    self.failures.append(("Decrypt", dec))
                if old.get("result", {}).get("plaintext") != "b2xk":
                    self.failures.append(("Decrypt old", old))
                i += 1
        finally:
            for client in self.clients:
                client.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_rotation_and_online_rewrap_under_traffic(
    tmp_path: Path, store_url: str, cache: StandInCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes on one store: A looks for a new ring every 300 ms, B only every 30 s (the default), so B follows
    the rotation on demand, when it meets the blobs A and the rewrap wrote under the new version."""
    cache.ring = DomainKeyRing.generate()
    cluster = ["--run-mode", "cluster", "--dkeycache-socket", cache.socket_path]
    monkeypatch.setenv("EHSM_KMS_DK_REFRESH_INTERVAL_MS", "300")
    node_a = LiveServer(tmp_path / "a", store_url, extra=[*cluster, "--enroll-mode", "open"]).start()
    monkeypatch.delenv("EHSM_KMS_DK_REFRESH_INTERVAL_MS")
    node_b = LiveServer(tmp_path / "b", store_url, extra=[*cluster, "--enroll-mode", "open"]).start()
    setup = KmsClient(node_a.url)
    traffic: Traffic | None = None
    try:
        assert setup.enroll()["code"] == 200
        keys = [setup.ok("CreateKey", AES)["keyid"] for _ in range(3)]
        old = {k: setup.ok("Encrypt", {"keyid": k, "plaintext": "b2xk"})["ciphertext"] for k in keys}
        traffic = Traffic([node_a.url, node_b.url], setup.appid, setup.apikey, keys, old)
        traffic.start()
        time.sleep(0.5)

        assert cache.rotate() == 2
        # Node A picks the new version up within its refresh interval: its new keys are wrapped with it.
        deadline = time.monotonic() + 15
        while True:
            probe = setup.ok("CreateKey", AES)["keyid"]
            if dk_versions(store_url).get(2):
                break
            assert time.monotonic() < deadline, f"node A never wrapped with DK version 2 (probe {probe})"
            time.sleep(0.1)
        before = dk_versions(store_url)
        assert before.get(1), before  # the old blobs are still under version 1

        done = cli("rewrap", "--batch-size", "2", *cluster, *store_args(tmp_path / "cli", store_url))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "rewrapped" in done.stdout and "left under older versions 0" in done.stdout
        assert "rewrap: batch" in done.stderr  # progress
        time.sleep(1.5)  # traffic goes on past the nodes' key-cache TTL, onto the rewrapped rows
    finally:
        if traffic is not None:
            traffic.stop_event.set()
            traffic.join(30)
        setup.close()
        node_a.stop()
        node_b.stop()
    assert traffic is not None and not traffic.is_alive()
    assert traffic.failures == []
    assert traffic.requests >= 30, traffic.requests
    assert "domain-key ring now at version 2 (a blob names a newer domain-key version" in node_b.log()
    assert set(dk_versions(store_url)) == {2}
    check = cli("rewrap", "--check", *cluster, *store_args(tmp_path / "cli", store_url))
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("0 blob(s) under DK versions other than 2")
    assert asyncio.run(_stale(store_url, 2)) == NONE_LEFT
    print(f"\nrotation + rewrap under traffic: {traffic.requests} requests over two nodes, none failed")


async def _stale(store_url: str, version: int) -> dict[str, int]:
    store = open_store(store_url)
    try:
        return await store.count_stale_blobs(version)
    finally:
        await store.close()


# ------------------------------------------------------------------------------------------ single mode
def single_settings(tmp_path: Path, store_url: str) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "node"),
        store_url=store_url,
        core_mode="inprocess",
        sealer_secret=f"env:{PASSPHRASE_ENV}",
        scheduler_interval_ms=0,
        key_cache_ttl_ms=0,
    )


async def _seed(settings: Settings, keys: int, *, byok: dict[str, str] | None = None) -> tuple[str, str, Caller, Node]:
    """A node with an admin credential, an app, ``keys`` keys and a default secret key (and with ``byok``, a key
    with a pending import, whose keyid and import parameters are put there), then a DK rotation."""
    node = await build_node(settings)
    banner = io.StringIO()
    assert await admin.ensure_admin_credential(node, out=banner)
    admin_id, admin_key = admin_credential(banner.getvalue())
    made = await apps.enroll(node, "open", None)
    app = Caller(node, made["appid"], made["apikey"])
    for _ in range(keys):
        await app.call("CreateKey", AES)
    await app.call("CreateSecret", {"secretName": "s1", "secretData": "dmFsdWU="})
    if byok is not None:
        external = {**AES, "origin": "EH_EXTERNAL_KEY"}
        byok["keyid"] = (await app.call("CreateKey", external))["keyid"]
        byok.update(await app.call("GetParametersForImport", {"keyid": byok["keyid"], "keyspec": "EH_RSA_2048"}))
    rotated = await rewrap.rotate_dk(node, admin_id, admin_key)
    assert (rotated["previous"], rotated["dk_version"]) == (1, 2)
    return admin_id, admin_key, app, node


@pytest.mark.anyio
async def test_a_concurrent_change_during_rewrap_is_not_lost(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, LIVE_PASSPHRASE)
    byok: dict[str, str] = {}
    admin_id, admin_key, app, node = await _seed(single_settings(tmp_path, store_url), 3, byok=byok)
    try:
        rotated: dict[str, str] = {}

        async def rotate_the_apikey_meanwhile(kind: str, rows: list[WrappedBlob]) -> None:
            if kind == "apikey" and not rotated:
                assert [r.keyid for r in rows] == [app.appid]
                req = admin.signed_admin_request(admin_id, admin_key, {"appid": app.appid}, node.clock_ms())
                cred = await admin.authenticate(node, req)
                rotated["apikey"] = await admin.rotate_apikey(node, req, cred, app.appid)

        report = await rewrap.rewrap_all(node, batch_size=2, before_write=rotate_the_apikey_meanwhile)
        # The rewrap's write of the app row found another blob there (compare-and-set) and left it alone.
        assert report.changed_meanwhile == 1 and report.rewrapped["apikey"] == 0
        assert report.rewrapped == {"cmk": 3, "apikey": 0, "secret-default-key": 1, "admin": 1, "import": 1}
        assert report.complete and report.remaining == NONE_LEFT  # the rotated APIKey was made under version 2
        # The new APIKey works and the old one does not: the rotation was not overwritten by the rewrap.
        new_app = Caller(node, app.appid, rotated["apikey"])
        assert (await new_app.call("ListKey", {}))["list"]
        with pytest.raises(errors.SignError):
            await app.call("ListKey", {})
        assert (await new_app.call("GetSecretValue", {"secretName": "s1"}))["secretData"] == "dmFsdWU="
        # The rewrapped wrapping key of the pending import still opens under its binding: the import works.
        pub = serialization.load_pem_public_key(byok["pubkey"].encode())
        assert isinstance(pub, rsa.RSAPublicKey)
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        material = base64.b64encode(pub.encrypt(bytes(range(32)), oaep)).decode()
        imported = {"keyid": byok["keyid"], "padding_mode": "EH_RSA_PKCS1_OAEP", "key_material": material,
                    "importToken": byok["importToken"]}  # fmt: skip
        await new_app.call("ImportKeyMaterial", imported)
        ct = (await new_app.call("Encrypt", {"keyid": byok["keyid"], "plaintext": "aW1wb3J0ZWQ="}))["ciphertext"]
        assert (await new_app.call("Decrypt", {"keyid": byok["keyid"], "ciphertext": ct}))[
            "plaintext"
        ] == "aW1wb3J0ZWQ="
        stored = await node.store.get_key(byok["keyid"])
        assert stored is not None and int.from_bytes(stored[1].blob[5:9], "big") == 2
    finally:
        await node.core.close()
        await node.store.close()


def test_a_killed_rewrap_resumes_where_it_stopped(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, LIVE_PASSPHRASE)
    settings = single_settings(tmp_path, store_url)

    async def seed() -> None:
        node = (await _seed(settings, 30))[3]
        await node.core.close()
        await node.store.close()

    asyncio.run(seed())
    total = sum(asyncio.run(_stale(store_url, 2)).values())
    assert total == 33  # 30 keys, the APIKey, the default secret key, the admin credential

    args = ["rewrap", "--batch-size", "1", "--pause-ms", "50", *store_args(tmp_path / "node", store_url),
            "--core-mode", "inprocess", "--sealer-secret", f"env:{PASSPHRASE_ENV}"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ehsm_kms.cli.main", "admin", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 5:
            line = proc.stderr.readline()
            assert line and time.monotonic() < deadline, "the rewrap printed no progress"
            seen += line.startswith("rewrap: batch")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()
    left = sum(asyncio.run(_stale(store_url, 2)).values())
    assert 0 < left <= total - 5

    again = cli(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    # Only what was left is done again: the first run's batches are not redone.
    assert again.stdout.startswith(f"rewrapped {left} blob(s) to DK version 2"), again.stdout
    assert again.stderr.count("rewrap: batch") == left
    check = cli("rewrap", "--check", "--dk-version", "2", *store_args(tmp_path / "node", store_url))
    assert check.returncode == 0 and check.stdout.startswith("0 blob(s)"), check.stdout + check.stderr
    assert set(dk_versions(store_url)) == {2}


def test_single_mode_rotate_dk_and_rewrap_survive_a_restart(tmp_path: Path, store_url: str) -> None:
    data = tmp_path / "node"
    server = LiveServer(data, store_url, extra=["--enroll-mode", "open"]).start()
    client = KmsClient(server.url)
    try:
        admin_key = admin_credential(server.log())[1]
        assert client.enroll()["code"] == 200
        keyid = client.ok("CreateKey", AES)["keyid"]
        first = client.ok("Encrypt", {"keyid": keyid, "plaintext": "Zmlyc3Q="})["ciphertext"]
        sealer = ["--sealer-secret", f"env:{PASSPHRASE_ENV}", *store_args(data, store_url)]
        # Wrong admin key: refused, nothing rotated.
        refused = cli("rotate-dk", "--admin-key", "env:ADMIN_KEY", *sealer, env={"ADMIN_KEY": "x" * 32})
        assert refused.returncode != 0
        rotated = cli("rotate-dk", "--admin-key", "env:ADMIN_KEY", *sealer, env={"ADMIN_KEY": admin_key})
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        assert "domain key rotated: version 1 -> 2" in rotated.stdout
        pending = cli("rewrap", "--check", *sealer)
        assert pending.returncode == 1 and not pending.stdout.startswith("0 blob(s)"), pending.stdout
        done = cli("rewrap", *sealer)
        assert done.returncode == 0, done.stdout + done.stderr
        # The running node meets the rewrapped rows (after its key-cache TTL) and reads the new ring on demand.
        time.sleep(1.2)
        assert client.ok("Decrypt", {"keyid": keyid, "ciphertext": first})["plaintext"] == "Zmlyc3Q="
        second = client.ok("Encrypt", {"keyid": keyid, "plaintext": "c2Vjb25k"})["ciphertext"]
        newer = client.ok("CreateKey", AES)["keyid"]
        assert newer and set(dk_versions(store_url)) == {2}
        assert cli("rewrap", "--check", *sealer).returncode == 0
        assert "domain-key ring now at version 2" in server.log()  # on demand: its periodic look is 30 s away
    finally:
        client.close()
        server.stop()
    restarted = LiveServer(data, store_url, extra=["--enroll-mode", "open"]).start()
    client = KmsClient(restarted.url, client.appid, client.apikey)
    try:
        assert client.ok("Decrypt", {"keyid": keyid, "ciphertext": first})["plaintext"] == "Zmlyc3Q="
        assert client.ok("Decrypt", {"keyid": keyid, "ciphertext": second})["plaintext"] == "c2Vjb25k"
        assert "DK version 2" in restarted.log()
        assert set(dk_versions(store_url)) == {2}
    finally:
        client.close()
        restarted.stop()
