"""DESIGN invariant 6 across nodes: two server processes on one PostgreSQL schema share the replay record.

* A signed request sent to both nodes at once is accepted exactly once; the other node answers the contract's
  replay error, and an accepted CreateKey made exactly one key.
* A request with a bad signature writes no replay record, so it cannot burn the timestamp and nonce of the good
  request that follows (the original recorded before it checked the signature).
* Two different legitimate requests in the same millisecond without a nonce are both accepted (the original
  keyed its cache on the timestamp alone and collided them); the same request twice is still a replay.

Both nodes run in single mode on one data directory, so they open the same sealed domain key, as the nodes of a
cluster share theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from ehsm_kms.wire.sign import sign_request
from tests.live import KmsClient, LiveServer, b64
from tests.robustness.conftest import report
from tests.signing import body, now_ms

pytestmark = pytest.mark.postgres

REPLAY = {"code": 400, "message": "Timestamp can't be repeated in 20 minutes", "result": {}}
SIGN_ERROR = {"code": 400, "message": "sign error", "result": {}}
AES = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}
SM4 = {"keyspec": "EH_SM4_CBC", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}
ROUNDS = 6


@dataclass
class Cluster:
    nodes: list[LiveServer]


@dataclass
class App:
    """One enrolled app with a client on each node."""

    a: KmsClient
    b: KmsClient

    @property
    def appid(self) -> str:
        return self.a.appid

    @property
    def apikey(self) -> str:
        return self.a.apikey

    def keys(self) -> set[str]:
        on_a = {k["keyid"] for k in self.a.ok("ListKey")["list"]}
        on_b = {k["keyid"] for k in self.b.ok("ListKey")["list"]}
        assert on_a == on_b
        return on_a


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, rb_store_url: str) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("cluster")
    nodes: list[LiveServer] = []
    try:
        for _ in range(2):  # one after the other: the first creates and seals the domain key
            nodes.append(LiveServer(data_dir, rb_store_url).start())
        yield Cluster(nodes)
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def app(cluster: Cluster) -> Iterator[App]:
    a, b = (KmsClient(node.url) for node in cluster.nodes)
    try:
        assert a.enroll()["code"] == 200  # on node A only; node B finds the app in the shared store
        b.appid, b.apikey = a.appid, a.apikey
        for c in (a, b):  # open the connections now, so concurrent sends really start together
            assert c.http.get("/ehsm", params={"Action": "GetVersion"}).status_code == 200
        yield App(a, b)
    finally:
        a.close()
        b.close()


def both(app: App, action: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    """The same body posted to node A and node B at the same moment; the answers in node order."""
    clients = (app.a, app.b)
    barrier = threading.Barrier(len(clients))
    out: list[dict[str, Any] | BaseException | None] = [None, None]

    def send(i: int) -> None:
        try:
            barrier.wait(10)
            out[i] = clients[i].post(action, request)
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    answers: list[dict[str, Any]] = []
    for item in out:
        assert isinstance(item, dict), item
        answers.append(item)
    return answers


def accepted_once(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Exactly one answer is a success and the other is the replay error; the success is returned."""
    ok = [a for a in answers if a["code"] == 200]
    others = [a for a in answers if a["code"] != 200]
    assert len(ok) == 1, answers
    assert others == [REPLAY], answers
    return ok[0]


def replay_rows(conn: psycopg.Connection[Any], appid: str) -> int:
    row = conn.execute("SELECT count(*) FROM replay WHERE appid = %s", (appid,)).fetchone()
    assert row is not None
    return int(row[0])


def nonceless_body(app: App, payload: dict[str, Any] | None, timestamp: str) -> dict[str, Any]:
    """A body as the Python and Go SDKs send it: no nonce at all."""
    out: dict[str, Any] = {
        "appid": app.appid,
        "timestamp": timestamp,
        "sign": sign_request(app.apikey, app.appid, timestamp, payload, None),
    }
    if payload is not None:
        out["payload"] = payload
    return out


# ------------------------------------------------------------------------------------------------ exactly once
def test_signed_request_is_accepted_once_across_nodes(app: App) -> None:
    winners = {"A": 0, "B": 0}
    for _ in range(ROUNDS):
        request = app.a.signed_body(AES)
        answers = both(app, "CreateKey", request)
        accepted_once(answers)
        winners["A" if answers[0]["code"] == 200 else "B"] += 1
        # Sent again later, to either node: still a replay.
        assert app.a.post("CreateKey", request) == REPLAY
        assert app.b.post("CreateKey", request) == REPLAY
    keys = app.keys()
    assert len(keys) == ROUNDS, f"{ROUNDS} accepted CreateKey requests made {len(keys)} keys"

    keyid = sorted(keys)[0]
    for i in range(ROUNDS):
        plaintext = b64(f"message {i}".encode())
        request = app.a.signed_body({"keyid": keyid, "plaintext": plaintext})
        answers = both(app, "Encrypt", request)
        ok = accepted_once(answers)
        winners["A" if answers[0]["code"] == 200 else "B"] += 1
        # The accepted ciphertext is good on both nodes.
        for client in (app.a, app.b):
            back = client.ok("Decrypt", {"keyid": keyid, "ciphertext": ok["result"]["ciphertext"]})
            assert back["plaintext"] == plaintext
    report(
        f"replay across nodes: {2 * ROUNDS} signed requests sent to both nodes at once, each accepted once "
        f"(node A won {winners['A']}, node B {winners['B']}); {ROUNDS} CreateKey made {len(keys)} keys"
    )


# ------------------------------------------------------------------------------------------------ bad signature
def test_bad_signature_does_not_burn_the_good_request(app: App, pg_conn: psycopg.Connection[Any]) -> None:
    keyid = app.a.ok("CreateKey", AES)["keyid"]
    ciphertext = app.a.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"x")})["ciphertext"]
    unknown = "00000000-0000-4000-8000-000000000000"
    garbled = b64(b"\x01" + bytes(40))
    cases: list[tuple[str, dict[str, Any] | None, int, str | None]] = [
        ("CreateKey", AES, 200, None),
        ("Encrypt", {"keyid": keyid, "plaintext": b64(b"hello")}, 200, None),
        ("Decrypt", {"keyid": keyid, "ciphertext": ciphertext}, 200, None),
        ("Decrypt", {"keyid": keyid, "ciphertext": garbled}, 400, "Decryption failed"),
        ("Encrypt", {"keyid": unknown, "plaintext": b64(b"hello")}, 400, "keyid error"),
        ("GenerateDataKey", {"keyid": keyid, "keylen": 32}, 200, None),
        ("ListKey", None, 200, None),
        ("DisableKey", {"keyid": unknown}, 400, "not find this keyid"),
        ("NoSuchAction", {"keyid": keyid}, 404, "API Not Found"),
    ]
    wrong_apikey = "W" * len(app.apikey)
    for n, (action, payload, code, message) in enumerate(cases):
        ts, nonce = str(now_ms()), f"nonce-{n}"
        good = body(app.appid, app.apikey, payload, timestamp=ts, nonce=nonce)
        forged = body(app.appid, wrong_apikey, payload, timestamp=ts, nonce=nonce)
        variants = [forged, dict(good, sign=good["sign"][:-4] + "AAA="), dict(good, sign="not a signature")]
        before = replay_rows(pg_conn, app.appid)
        for i, bad in enumerate(variants):
            node = app.b if i % 2 == 0 else app.a
            assert node.post(action, bad) == SIGN_ERROR, (action, i)
        assert replay_rows(pg_conn, app.appid) == before, f"{action}: a bad signature wrote a replay record"
        out = app.a.post(action, good)
        assert out["code"] == code, (action, out)
        if message is not None:
            assert out["message"].startswith(message), (action, out)
        assert replay_rows(pg_conn, app.appid) == before + 1, f"{action}: the verified request was not recorded"
        assert app.b.post(action, good) == REPLAY
    report(
        f"bad signatures: {3 * len(cases)} forged requests over {len(cases)} action cases wrote no replay record; "
        f"each good request after them was accepted once"
    )


# ------------------------------------------------------------------------------------------------ no nonce
def test_same_millisecond_without_nonce_both_accepted(app: App) -> None:
    keyid = app.a.ok("CreateKey", AES)["keyid"]
    ts = str(now_ms())
    first = nonceless_body(app, {"keyid": keyid, "plaintext": b64(b"first")}, ts)
    second = nonceless_body(app, {"keyid": keyid, "plaintext": b64(b"second")}, ts)
    # At once, one on each node.
    clients = (app.a, app.b)
    out: list[dict[str, Any] | None] = [None, None]
    barrier = threading.Barrier(2)

    def send(i: int, request: dict[str, Any]) -> None:
        barrier.wait(10)
        out[i] = clients[i].post("Encrypt", request)

    threads = [threading.Thread(target=send, args=(i, r)) for i, r in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [o and o["code"] for o in out] == [200, 200], out

    # The same again, one after the other on one node, with CreateKey.
    before = app.keys()
    ts = str(now_ms())
    assert app.a.post("CreateKey", nonceless_body(app, AES, ts))["code"] == 200
    assert app.a.post("CreateKey", nonceless_body(app, SM4, ts))["code"] == 200
    assert len(app.keys() - before) == 2
    # And ListKey and CreateKey in the same millisecond.
    ts = str(now_ms())
    assert app.b.post("ListKey", nonceless_body(app, None, ts))["code"] == 200
    assert app.b.post("CreateKey", nonceless_body(app, AES, ts))["code"] == 200

    # Control: the very same nonce-less request twice is a replay, on either node.
    ts = str(now_ms())
    same = nonceless_body(app, {"keyid": keyid, "plaintext": b64(b"same")}, ts)
    accepted_once(both(app, "Encrypt", same))
    # Different nonces, same millisecond, same payload: two requests, both accepted.
    ts = str(now_ms())
    payload = {"keyid": keyid, "plaintext": b64(b"same")}
    for nonce in ("1", "2"):
        assert app.b.post("Encrypt", body(app.appid, app.apikey, payload, timestamp=ts, nonce=nonce))["code"] == 200


def test_nodes_share_the_store(cluster: Cluster) -> None:
    """Sanity of the set-up: two processes, one schema (a key made on one node is used on the other)."""
    assert len({node.proc.pid for node in cluster.nodes if node.proc}) == 2
    a, b = (KmsClient(node.url) for node in cluster.nodes)
    try:
        a.enroll()
        b.appid, b.apikey = a.appid, a.apikey
        keyid = b.ok("CreateKey", AES)["keyid"]
        ct = a.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"shared")})["ciphertext"]
        assert b.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == b64(b"shared")
    finally:
        a.close()
        b.close()
