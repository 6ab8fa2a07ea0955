"""Cluster mode of a node: it starts without the domain key, answers /healthz, says 503 on /readyz and a clear
error to KMS requests while its core waits for the dkeycache, and becomes ready by itself when the cache serves.
A core killed with SIGKILL is restarted and fetches the ring again; the DK is only ever in the core process.
Single mode still fails fast."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from ehsm_kms import errors
from ehsm_kms.config import Settings
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.server.assemble import build_app, build_node
from tests.cluster_node.conftest import cluster_settings
from tests.cluster_node.standin import StandInCache
from tests.core.test_memscan import occurrences
from tests.live import KmsClient, LiveServer
from tests.signing import body

WAITING = {"code": 500, "message": "the core is waiting for the domain key", "result": None}
AES = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}


async def _poll(client: httpx.AsyncClient, path: str, status: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while (await client.get(path)).status_code != status:
        assert time.monotonic() < deadline, f"{path} did not answer {status} within {seconds} s"
        await asyncio.sleep(0.05)


@pytest.mark.anyio
@pytest.mark.parametrize("core_mode", ["isolated", "inprocess"])
async def test_a_cluster_node_serves_healthz_and_waits_for_the_domain_key(
    tmp_path: Path, store_url: str, cache: StandInCache, core_mode: str
) -> None:
    app = build_app(cluster_settings(tmp_path, "node", store_url, cache, core_mode=core_mode))
    started = time.monotonic()
    await app.startup()  # no ring anywhere yet: the start does not wait for one
    try:
        assert time.monotonic() - started < 20
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json() == {"status": "not ready"}
            # A KMS request gets the clear error at once, not a hang.
            asked = time.monotonic()
            assert (await client.get("/ehsm", params={"Action": "Enroll"})).json() == WAITING
            assert time.monotonic() - asked < 2
            assert app.node is not None and await app.node.store.get_admin_credential() is None
            requests_before = cache.requests
            await asyncio.sleep(0.3)
            assert cache.requests > requests_before  # it keeps asking (with backoff)

            cache.ring = DomainKeyRing.generate()
            await _poll(client, "/readyz", 200)
            enrolled = (await client.get("/ehsm", params={"Action": "Enroll"})).json()
            assert enrolled["code"] == 200
            appid, apikey = enrolled["result"]["appid"], enrolled["result"]["apikey"]

            async def post(action: str, payload: dict[str, object]) -> dict[str, object]:
                resp = await client.post("/ehsm/", params={"Action": action}, json=body(appid, apikey, payload))
                out: dict[str, object] = resp.json()
                assert out["code"] == 200, out
                return out["result"]  # type: ignore[return-value]

            keyid = (await post("CreateKey", AES))["keyid"]
            ct = (await post("Encrypt", {"keyid": keyid, "plaintext": base64.b64encode(b"hi").decode()}))["ciphertext"]
            assert (await post("Decrypt", {"keyid": keyid, "ciphertext": ct}))["plaintext"] == "aGk="
            # The admin credential is made once the core has the domain key (it seals it).
            deadline = time.monotonic() + 10
            while await app.node.store.get_admin_credential() is None:
                assert time.monotonic() < deadline, "no admin credential after the core became ready"
                await asyncio.sleep(0.05)
    finally:
        await app.shutdown()


@pytest.mark.anyio
async def test_single_mode_still_fails_fast_on_a_wrong_passphrase(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "d"), core_mode="inprocess", scheduler_interval_ms=0)
    node = await build_node(settings, secret=b"the right passphrase")
    await node.core.close()
    await node.store.close()
    with pytest.raises(errors.CoreStartError):
        await build_node(settings, secret=b"a wrong passphrase")


def _core_pid(server_pid: int) -> int:
    """The server's isolated core (its child ``python -m ehsm_kms.core.child``)."""
    deadline = time.monotonic() + 15
    while True:
        for task in Path(f"/proc/{server_pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"ehsm_kms.core.child" in cmdline:
                    return int(pid)
        assert time.monotonic() < deadline, "no core process under the server"
        time.sleep(0.05)


def _wait_status(url: str, path: str, status: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url + path, timeout=2).status_code == status:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{path} did not answer {status} within {seconds} s"
        time.sleep(0.05)


def test_a_killed_core_is_restarted_and_fetches_the_ring_again(tmp_path: Path, cache: StandInCache) -> None:
    cache.ring = DomainKeyRing.generate()
    store = f"sqlite:///{tmp_path / 'node' / 'ehsm-kms.db'}"
    extra = ["--run-mode", "cluster", "--dkeycache-socket", cache.socket_path, "--enroll-mode", "open"]
    server = LiveServer(tmp_path / "node", store, extra=extra).start()
    client = KmsClient(server.url)
    try:
        assert server.proc is not None
        assert client.enroll()["code"] == 200
        keyid = client.ok("CreateKey", AES)["keyid"]
        ct = client.ok("Encrypt", {"keyid": keyid, "plaintext": "a2VwdA=="})["ciphertext"]
        first = _core_pid(server.proc.pid)
        # The ring crossed the socket sealed: the DK is in the core process, never in the server's (invariant 1).
        dk1 = cache.ring.key(1)
        assert occurrences(first, dk1) >= 1
        assert occurrences(server.proc.pid, dk1) == 0

        cache.ring, ring = None, cache.ring  # the cache lost its ring too: the new core must wait
        os.kill(first, signal.SIGKILL)
        _wait_status(server.url, "/readyz", 503)
        assert httpx.get(server.url + "/healthz", timeout=2).status_code == 200
        second = _core_pid(server.proc.pid)
        assert second != first
        # While the new core starts, requests get "Server exception." (CoreUnavailable); once it runs, the waiting
        # error, until the cache has a ring again.
        deadline = time.monotonic() + 15
        while (answer := client.call("Decrypt", {"keyid": keyid, "ciphertext": ct})) != WAITING:
            assert answer == {"code": 500, "message": "Server exception.", "result": None}, answer
            assert time.monotonic() < deadline, "the restarted core never said it waits for the domain key"
            time.sleep(0.05)

        asked = cache.requests
        cache.ring = ring
        _wait_status(server.url, "/readyz", 200)
        assert cache.requests > asked
        assert client.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == "a2VwdA=="
        assert "the isolated core died; restarting it" in server.log()
    finally:
        client.close()
        server.stop()
