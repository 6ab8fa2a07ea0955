"""DESIGN invariant 4, acknowledged means durable: kill -9 of a node under load loses nothing it acknowledged.

Client threads create keys and encrypt under each; a (keyid, ciphertext, plaintext) is recorded only after the
server answered code 200. The server is killed with SIGKILL while requests are in flight (one slow request is
sent just before, so that at least one certainly is), then restarted on the same data directory and store: every
acknowledged key is listed and decrypts what it encrypted.

The isolated core is a child of the server process; it must not outlive its parent (no orphan holding the domain
key), so the test finds it under ``/proc`` before the kill and waits, bounded, for it to go away.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.live import KmsClient, LiveServer, b64
from tests.robustness.conftest import report

WORKERS = 6
LOOP_BOUND_S = 30.0  # a worker stops by itself after this, whatever happens (normally: at the kill)
MAX_ITERATIONS = 5000
MIN_ACKED = 20
IN_FLIGHT_MARGIN_S = 0.005
ORPHAN_WAIT_S = 10.0
SPECS = ("EH_AES_GCM_256", "EH_AES_GCM_128", "EH_SM4_CTR", "EH_SM4_CBC")


@dataclass
class Acked:
    keyid: str
    asymmetric: bool = False
    ciphertext: str | None = None
    plaintext: str | None = None

    @property
    def decrypt(self) -> str:
        return "AsymmetricDecrypt" if self.asymmetric else "Decrypt"


@dataclass
class Failure:
    started: float
    ended: float
    kind: str
    connected: bool  # False: the connection was refused (the server was already gone)


@dataclass
class Worker:
    acked: list[Acked] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    refusals: list[dict[str, object]] = field(default_factory=list)  # non-200 answers (must not happen)
    requests: int = 0
    error: BaseException | None = None
    arm: threading.Event = field(default_factory=threading.Event)
    sent: threading.Event = field(default_factory=threading.Event)


def _loop(url: str, appid: str, apikey: str, worker: Worker, seed: int) -> None:
    """Create a key, encrypt under it, repeat; stop on the first transport error, or at the bound.

    Once ``worker.arm`` is set, the worker sends one slow request (CreateKey RSA-4096: the core spends 0.15 to
    1.5 s on it, where RSA-3072 was seen to finish in 35 ms) and says so in ``worker.sent``; the kill follows
    20 ms later, while it runs, so at least one request is certainly inside the server. The other workers are
    wherever they happen to be.
    """
    rng = random.Random(seed)
    client = KmsClient(url, appid, apikey)
    deadline = time.monotonic() + LOOP_BOUND_S
    try:
        for i in range(MAX_ITERATIONS):
            if time.monotonic() > deadline:
                return
            asymmetric = worker.arm.is_set() and not worker.sent.is_set()
            spec = "EH_RSA_4096" if asymmetric else SPECS[i % len(SPECS)]
            create = {"keyspec": spec, "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}
            if asymmetric:
                worker.sent.set()
            out = _send(client, worker, "CreateKey", create)
            if out is None:
                return
            if out["code"] != 200:
                worker.refusals.append(out)
                continue
            ack = Acked(out["result"]["keyid"], asymmetric)
            worker.acked.append(ack)
            plaintext = b64(rng.randbytes(rng.randint(1, 64)))
            encrypt: dict[str, object] = {"keyid": ack.keyid, "plaintext": plaintext}
            if asymmetric:
                encrypt["padding_mode"] = "EH_RSA_PKCS1_OAEP"
            out = _send(client, worker, "AsymmetricEncrypt" if asymmetric else "Encrypt", encrypt)
            if out is None:
                return
            if out["code"] != 200:
                worker.refusals.append(out)
                continue
            ack.ciphertext, ack.plaintext = out["result"]["ciphertext"], plaintext
    except BaseException as exc:  # reported by the test, never lost in the thread
        worker.error = exc
    finally:
        client.close()


def _send(client: KmsClient, worker: Worker, action: str, payload: dict[str, object]) -> dict[str, object] | None:
    started = time.monotonic()
    worker.requests += 1
    try:
        return client.call(action, payload)
    except httpx.TransportError as exc:
        worker.failures.append(
            Failure(started, time.monotonic(), type(exc).__name__, not isinstance(exc, httpx.ConnectError))
        )
        return None


def _core_pid(server_pid: int) -> int:
    """The isolated core: the server's child process running ``ehsm_kms.core.child``."""
    found = []
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"ehsm_kms.core.child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
    assert len(found) == 1, f"expected one core child of {server_pid}, found {found}"
    return found[0]


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time), to tell the process from a later one with the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[19]


def _alive(pid: int, start_time: str) -> bool:
    """Running (a zombie waiting for a reaper has exited: it holds no memory and no key)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = stat.rpartition(")")[2].split()
    return fields[19] == start_time and fields[0] not in ("Z", "X")


def _durability(start: Callable[..., LiveServer], data_dir: Path, store_url: str, label: str) -> None:
    server = start(data_dir, store_url)
    admin = KmsClient(server.url)
    try:
        assert admin.enroll()["code"] == 200
        appid, apikey = admin.appid, admin.apikey
    finally:
        admin.close()
    assert server.proc is not None
    core = _core_pid(server.proc.pid)
    core_started = _start_time(core)
    assert core_started is not None

    workers = [Worker() for _ in range(WORKERS)]
    threads = [
        threading.Thread(target=_loop, args=(server.url, appid, apikey, w, i), name=f"durability-{i}", daemon=True)
        for i, w in enumerate(workers)
    ]
    for t in threads:
        t.start()
    time.sleep(random.uniform(0.5, 1.5))
    deadline = time.monotonic() + 10
    while sum(len(w.acked) for w in workers) < MIN_ACKED and time.monotonic() < deadline:
        time.sleep(0.05)  # a slow machine: give the load time to build up
    workers[0].arm.set()
    assert workers[0].sent.wait(10), "the slow request was never sent"
    time.sleep(0.02)  # it is in the core now: an RSA-4096 key takes far longer than this to make
    acked_before_kill = sum(len(w.acked) for w in workers)
    killed_at = time.monotonic()
    server.kill()
    killed_done = time.monotonic()
    for t in threads:
        t.join(LOOP_BOUND_S + 30)
    assert not any(t.is_alive() for t in threads), "the client loop did not stop by itself"

    # The core does not outlive its parent.
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while _alive(core, core_started) and time.monotonic() < deadline:
        time.sleep(0.02)
    core_gone_s = time.monotonic() - killed_done
    assert not _alive(core, core_started), f"core {core} still runs {ORPHAN_WAIT_S} s after its parent was killed"

    for w in workers:
        assert w.error is None, repr(w.error)
        assert w.refusals == [], w.refusals[:3]
        # Every worker ended on a transport error: the loop was still running when the server went.
        assert w.failures, "a worker ended before the kill"
    failures = [f for w in workers for f in w.failures]
    # Sent (on an open connection) a little before the kill, and never answered.
    in_flight = [f for f in failures if f.started < killed_at - IN_FLIGHT_MARGIN_S and f.connected]
    assert in_flight, f"no request was in flight at the kill: {failures}"
    slow_in_flight = sum(1 for f in workers[0].failures if f in in_flight)
    acked = [a for w in workers for a in w.acked]
    encrypted = [a for a in acked if a.ciphertext is not None]
    assert len(acked) >= MIN_ACKED, f"too little load before the kill ({len(acked)} keys)"

    # Restart on the same data directory and store: nothing acknowledged is lost.
    restarted = start(data_dir, store_url)
    client = KmsClient(restarted.url, appid, apikey)
    try:
        listed = {k["keyid"] for k in client.ok("ListKey")["list"]}
        missing = [a.keyid for a in acked if a.keyid not in listed]
        assert missing == [], f"{len(missing)} acknowledged keys lost, e.g. {missing[:3]}"
        for a in encrypted:
            decrypt: dict[str, object] = {"keyid": a.keyid, "ciphertext": a.ciphertext}
            if a.asymmetric:
                decrypt["padding_mode"] = "EH_RSA_PKCS1_OAEP"
            out = client.call(a.decrypt, decrypt)
            assert out["code"] == 200, (a.keyid, out)
            assert out["result"]["plaintext"] == a.plaintext
    finally:
        client.close()
    report(
        f"durability[{label}]: {sum(w.requests for w in workers)} requests, {len(acked)} keys acknowledged "
        f"({acked_before_kill} when the kill was sent), "
        f"{len(encrypted)} encryptions acknowledged, "
        f"{len(in_flight)} requests in flight at the kill ({len(in_flight) - slow_in_flight} besides the slow one), "
        f"{len(listed)} keys listed after restart, "
        f"core gone {core_gone_s * 1000:.0f} ms after its parent"
    )


def test_kill9_sqlite_loses_nothing_acknowledged(servers: Callable[..., LiveServer], tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    _durability(servers, data_dir, f"sqlite:///{data_dir / 'ehsm-kms.db'}", "sqlite")


@pytest.mark.postgres
def test_kill9_postgres_loses_nothing_acknowledged(
    servers: Callable[..., LiveServer], tmp_path: Path, rb_store_url: str
) -> None:
    _durability(servers, tmp_path / "node", rb_store_url, "postgres")


def test_no_orphan_core_after_sigterm_either(servers: Callable[..., LiveServer], tmp_path: Path) -> None:
    """A clean stop takes the core with it too (the orderly path of the same property)."""
    data_dir = tmp_path / "node"
    server = servers(data_dir, f"sqlite:///{data_dir / 'ehsm-kms.db'}")
    assert server.proc is not None
    core = _core_pid(server.proc.pid)
    started = _start_time(core)
    assert started is not None
    # uvicorn re-raises the SIGTERM it handled once the graceful shutdown is over.
    assert server.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in server.log()
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while _alive(core, started) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(core, started)
    assert os.path.exists(data_dir / "domain-key.sealed")
