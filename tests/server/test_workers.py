"""``serve --workers 2``: two server processes on one port, supervised, sharing replay protection."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.live import KmsClient, LiveServer, b64


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(p) for p in text)
    return sorted(out)


def _workers(server: LiveServer) -> list[int]:
    """The worker processes: the supervisor's children that are not core processes of another worker."""
    assert server.proc is not None
    return _children(server.proc.pid)


def _wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_two_workers_share_the_port_the_store_and_replay_records(tmp_path: Path) -> None:
    before_kill = ""
    server = LiveServer(tmp_path / "data", f"sqlite:///{tmp_path / 'kms.db'}", extra=["--workers", "2"]).start()
    try:
        _wait_for(lambda: len(_workers(server)) == 2)
        first = _workers(server)
        # Each worker runs its own isolated core: two grandchildren per supervisor.
        assert all(len(_children(pid)) == 1 for pid in first)

        client = KmsClient(server.url)
        assert client.enroll()["code"] == 200
        keyid = client.ok(
            "CreateKey",
            {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"},
        )["keyid"]
        # Fresh connections land on both workers; every answer is right whichever worker gave it.
        ciphertexts = []
        for i in range(40):
            one = KmsClient(server.url, client.appid, client.apikey)
            try:
                ciphertexts.append(one.ok("Encrypt", {"keyid": keyid, "plaintext": b64(f"m{i}".encode())}))
            finally:
                one.close()
        for i, ct in enumerate(ciphertexts):
            assert client.ok("Decrypt", {"keyid": keyid, "ciphertext": ct["ciphertext"]})["plaintext"] == b64(
                f"m{i}".encode()
            )

        # One signed request sent many times on separate connections is accepted once, whichever worker sees it.
        signed = client.signed_body({"keyid": keyid, "plaintext": b64(b"once")})
        codes = []
        for _ in range(10):
            with httpx.Client(base_url=server.url, timeout=30.0) as http:
                codes.append(http.post("/ehsm/", params={"Action": "Encrypt"}, json=signed).json()["code"])
        assert codes.count(200) == 1, codes

        # A worker killed with SIGKILL is replaced; the node keeps answering meanwhile.
        before_kill = server.log()
        victim = first[0]
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: len(_workers(server)) == 2 and victim not in _workers(server))
        _wait_for(lambda: httpx.get(server.url + "/readyz", timeout=5.0).status_code == 200)
        assert client.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"after")})["ciphertext"]
        client.close()
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.log()
    log = server.log()
    assert "worker 0 started" in log and "worker 1 started" in log
    # Request ids start with a per-process prefix: both workers answered requests before one was killed.
    prefixes = {line.split("request id=")[1][:8] for line in before_kill.splitlines() if "request id=" in line}
    assert len(prefixes) == 2, prefixes


def test_workers_setting_is_bounded() -> None:
    from ehsm_kms import config, errors

    for bad in (0, 65):
        try:
            config.load(overrides={"workers": bad}, environ={})
        except errors.ConfigError as exc:
            assert "workers" in exc.message
        else:
            raise AssertionError(f"workers={bad} was accepted")
