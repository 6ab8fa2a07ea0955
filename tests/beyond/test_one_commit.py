"""A request that changes nothing (Encrypt, Sign, ListKey ...) waits for one commit, not two: its replay record
goes into the transaction of its audit record, which is written before the answer leaves.

Shown on both backends through the node's real request path (its ASGI app with an in-process core, a real SQLite
file or PostgreSQL schema): the SQLite writer's commit counter, the replay and audit rows read with SQL, a replay
refused within one batch and across batches (and its audit record saying so), expired replay rows still purged,
and replay protection kept when the audit log refuses every write, with ``audit_fail_closed`` off and on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ehsm_kms import errors
from ehsm_kms.server.app import KmsApp
from ehsm_kms.storage.sqlite import SqliteStore
from tests.beyond.conftest import database, refusing_inserts, url_of
from tests.beyond.test_audit import AUDIT_DOWN
from tests.live import b64
from tests.pg import PG_DSN
from tests.robustness.test_fuzz import InProcess, in_process, signed_body

REPLAYED = errors.ReplayError().envelope()


@pytest.fixture(params=["sqlite", "postgresql"])
def node(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[InProcess]:
    store_url = None
    if request.param == "postgresql":
        store_url = f"{PG_DSN}?schema={request.getfixturevalue('pg_schema')}"
    with in_process(tmp_path / "data", store_url) as target:
        app = _app(target)
        if app.scheduler is not None:  # its jobs write too: only the requests' commits are counted here
            target.runner.run(app.scheduler.stop())
            app.scheduler = None
        yield target


def _app(target: InProcess) -> KmsApp:
    assert target.kms_app is not None and target.kms_app.node is not None
    return target.kms_app


def _url(target: InProcess) -> str:
    node = _app(target).node
    assert node is not None
    return url_of(node.store)


def _sql(target: InProcess, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with database(_url(target)) as run:
        return run(query, params)


def _count(target: InProcess, table: str) -> int:
    return int(_sql(target, f"SELECT count(*) FROM {table}")[0][0])


async def _post(client: httpx.AsyncClient, action: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    resp = await client.post("/ehsm/", params={"Action": action}, json=body)
    assert resp.status_code == 200
    return resp.json(), resp.headers["x-request-id"]


def _send(target: InProcess, action: str, *bodies: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The bodies sent at once (one task each, so the store sees them together)."""

    async def all_at_once() -> list[tuple[dict[str, Any], str]]:
        return list(await asyncio.gather(*(_post(target.client, action, body) for body in bodies)))

    return target.runner.run(all_at_once())


def _encrypt_body(target: InProcess, text: bytes = b"one commit") -> dict[str, Any]:
    return signed_body(target.material, {"keyid": target.material.keyids["aes"], "plaintext": b64(text)})


def _audit_of(target: InProcess, request_id: str) -> list[tuple[Any, ...]]:
    return _sql(target, "SELECT action, code, message FROM audit WHERE request_id = ?", (request_id,))


def test_each_encrypt_is_one_commit_with_its_replay_and_audit_rows(node: InProcess) -> None:
    replays, audits = _count(node, "replay"), _count(node, "audit")
    store = _app(node).node.store  # type: ignore[union-attr]
    commits = store.commits if isinstance(store, SqliteStore) else None
    for i in range(20):  # one after the other: each request is its own batch
        [(answer, request_id)] = _send(node, "Encrypt", _encrypt_body(node, f"m{i}".encode()))
        assert answer["code"] == 200, answer
        assert _audit_of(node, request_id) == [("Encrypt", 200, "")]
    assert _count(node, "replay") == replays + 20
    assert _count(node, "audit") == audits + 20
    if commits is not None:  # SQLite counts its writer's commits: one per request (two before they were joined)
        assert isinstance(store, SqliteStore)
        assert store.commits - commits == 20


def test_a_replay_is_refused_and_its_audit_record_says_so(node: InProcess) -> None:
    body = _encrypt_body(node)
    [(first, _)] = _send(node, "Encrypt", body)
    [(again, request_id)] = _send(node, "Encrypt", body)
    assert first["code"] == 200 and again == REPLAYED
    assert _audit_of(node, request_id) == [("Encrypt", 400, REPLAYED["message"])]
    # Within one batch: the same request sixteen times at once is answered once.
    body = _encrypt_body(node, b"sixteen at once")
    answers = _send(node, "Encrypt", *[body] * 16)
    assert sorted(a["code"] for a, _ in answers) == [200] + [400] * 15
    assert all(a == REPLAYED for a, _ in answers if a["code"] != 200)
    codes = sorted(code for _, rid in answers for _, code, _ in _audit_of(node, rid))
    assert codes == [200] + [400] * 15
    # Other actions that change nothing take the same path: Sign, ListKey.
    fields = {"message": b64(b"m"), "message_type": "EH_RAW", "digest_mode": "EH_SHA_256"}
    sign = signed_body(
        node.material, {"keyid": node.material.keyids["ec"], **fields, "padding_mode": "EH_RSA_PKCS1_PSS"}
    )
    listing = signed_body(node.material, None)
    for action, signed in (("Sign", sign), ("ListKey", listing)):
        [(ok, _)], [(refused, _)] = _send(node, action, signed), _send(node, action, signed)
        assert ok["code"] == 200 and refused == REPLAYED, (action, ok, refused)


def test_expired_replay_rows_are_still_purged(node: InProcess) -> None:
    """Purging rides on the transactions that write replay records, now the audit batches too."""
    with database(_url(node)) as run:
        for i in range(50):
            run("INSERT INTO replay (appid, digest, expires_ms) VALUES (?, ?, ?)", ("expired-app", bytes([i]) * 40, 1))
    time.sleep(1.1)  # the purge interval (1 s) since the last purge has passed
    [(answer, _)] = _send(node, "Encrypt", _encrypt_body(node))
    assert answer["code"] == 200
    assert _sql(node, "SELECT count(*) FROM replay WHERE appid = ?", ("expired-app",))[0][0] == 0


def test_replay_protection_does_not_depend_on_the_audit_log(node: InProcess) -> None:
    app = _app(node)
    body = _encrypt_body(node, b"audit down")
    replays = _count(node, "replay")
    with refusing_inserts(_url(node), "audit"):
        # audit_fail_closed off (the default): answered; the replay record is written without the audit record.
        [(answer, _)] = _send(node, "Encrypt", body)
        assert answer["code"] == 200 and answer["result"]["ciphertext"]
        assert _count(node, "replay") == replays + 1
        [(again, _)] = _send(node, "Encrypt", body)
        assert again == REPLAYED
        # audit_fail_closed on: the answer is withheld, and the request still cannot be replayed later.
        app.audit_fail_closed = True
        try:
            withheld = _encrypt_body(node, b"withheld")
            [(answer, _)] = _send(node, "Encrypt", withheld)
            assert answer == AUDIT_DOWN
            assert _count(node, "replay") == replays + 2
        finally:
            app.audit_fail_closed = False
    [(after, _)] = _send(node, "Encrypt", withheld)
    assert after == REPLAYED
    [(fresh, _)] = _send(node, "Encrypt", _encrypt_body(node, b"audit back"))
    assert fresh["code"] == 200
