"""Two server processes on one PostgreSQL schema (two nodes of a cluster): concurrent PutSecretValue calls spread
over both give versions 1..n+1 with no gap, no duplicate and exactly one current version (the original's
read-then-write could give two requests the same version, section 12.2.5).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from tests.e2e import App
from tests.pg import PG_DSN
from tests.secrets.conftest import Pair

pytestmark = pytest.mark.postgres

PUTS = 50


def on_both(pair: Pair) -> tuple[App, App]:
    """One app, enrolled on node A; node B finds it in the shared store."""
    a = pair.wires[0].enroll()
    return a, App(pair.wires[1], a.appid, a.apikey)


def together(calls: list[Callable[[], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run the calls on as many threads, released at the same moment."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        barrier.wait(30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def rows(schema: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={schema}") as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


@pytest.mark.parametrize("with_cmk", [False, True], ids=["default-key", "cmk"])
def test_concurrent_puts_on_two_nodes_make_versions_without_gaps(pg_pair: Pair, with_cmk: bool) -> None:
    a, b = on_both(pg_pair)
    extra = {"encryptionKeyId": a.create_key("EH_AES_GCM_256")} if with_cmk else {}
    a.ok("CreateSecret", {"secretName": "hot", "secretData": "v1", **extra})
    for node in (a, b):  # connections opened now, so the puts really start together
        node.ok("DescribeSecret", {"secretName": "hot"})

    def put(i: int) -> Callable[[], dict[str, Any]]:
        node = (a, b)[i % 2]
        body = node.body({"secretName": "hot", "secretData": f"value {i}"})  # signed before the race
        return lambda: node.send("PutSecretValue", body)

    start = time.monotonic()
    answers = together([put(i) for i in range(PUTS)])
    elapsed = time.monotonic() - start
    assert [out["code"] for out in answers] == [200] * PUTS, [out for out in answers if out["code"] != 200]
    assert {out["message"] for out in answers} == {"The hot new version put success."}

    for node in (a, b):
        listed = node.ok("ListSecretVersionIds", {"secretName": "hot"})
        assert [v["versionId"] for v in listed["versionIds"]] == list(range(1, PUTS + 2))
        assert listed["totalCount"] == PUTS + 1
    values = {b.ok("GetSecretValue", {"secretName": "hot", "versionId": n})["secretData"] for n in range(2, PUTS + 2)}
    assert values == {f"value {i}" for i in range(PUTS)}  # every put is one version, none lost or doubled
    current = a.ok("GetSecretValue", {"secretName": "hot"})
    assert current["versionId"] == PUTS + 1

    (sid,) = rows(pg_pair.schema, "SELECT secret_id FROM secrets WHERE appid = %s", a.appid)[0]
    assert rows(pg_pair.schema, "SELECT count(*) FROM secret_versions WHERE secret_id = %s AND is_current", sid) == [
        (1,)
    ]
    numbers = rows(pg_pair.schema, "SELECT version FROM secret_versions WHERE secret_id = %s ORDER BY version", sid)
    assert [n for (n,) in numbers] == list(range(1, PUTS + 2))
    assert elapsed < 30, elapsed


def test_first_secrets_of_an_app_on_two_nodes_share_one_default_key(pg_pair: Pair) -> None:
    """The app's default secret key is made on first use; when both nodes make one at once, the first stored wins
    and every secret of the app (sealed on either node) opens on both."""
    a, b = on_both(pg_pair)
    for node in (a, b):
        node.ok("ListSecrets", {})

    def create(i: int) -> Callable[[], dict[str, Any]]:
        node = (a, b)[i % 2]
        body = node.body({"secretName": f"s{i}", "secretData": f"value {i}"})
        return lambda: node.send("CreateSecret", body)

    answers = together([create(i) for i in range(12)])
    assert [out["code"] for out in answers] == [200] * 12, answers
    for i in range(12):
        for node in (a, b):
            assert node.ok("GetSecretValue", {"secretName": f"s{i}"})["secretData"] == f"value {i}"
    assert rows(pg_pair.schema, "SELECT count(*) FROM secret_default_keys WHERE appid = %s", a.appid) == [(1,)]


def test_concurrent_creates_of_one_name_on_two_nodes_make_one_secret(pg_pair: Pair) -> None:
    a, b = on_both(pg_pair)

    def create(i: int) -> Callable[[], dict[str, Any]]:
        node = (a, b)[i % 2]
        body = node.body({"secretName": "one", "secretData": f"value {i}"})
        return lambda: node.send("CreateSecret", body)

    answers = together([create(i) for i in range(10)])
    winners = [i for i, out in enumerate(answers) if out["code"] == 200]
    assert len(winners) == 1, answers
    exists = {"code": 400, "message": "Secret name already exists, cannot use the same secret name", "result": {}}
    assert all(out == exists for i, out in enumerate(answers) if i != winners[0])
    assert a.ok("GetSecretValue", {"secretName": "one"})["secretData"] == f"value {winners[0]}"
