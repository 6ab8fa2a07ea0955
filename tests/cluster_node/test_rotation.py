"""Following DK rotations: two nodes on one store with the stand-in dkeycache. Node A picks up a rotated ring and
wraps new blobs with the new version; node B, before its own periodic refresh, meets those blobs and fetches the
ring on demand, so no request fails. A periodic refresh picks up a rotation by itself, and a ring that does not
extend the one held is refused. A cluster node never rotates the DK itself."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ehsm_kms import errors
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.protocol import Call
from ehsm_kms.server.assemble import build_node
from ehsm_kms.service import admin, apps, rewrap
from ehsm_kms.service.node import Node
from tests.cluster_node.conftest import Caller, admin_credential, cluster_settings
from tests.cluster_node.standin import StandInCache

pytestmark = pytest.mark.anyio

AES = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}


def dk_version_of(blob: bytes) -> int:
    return int.from_bytes(blob[5:9], "big")


async def ring(node: Node) -> int:
    return int((await rewrap.ring_status(node))["dk_version"])


@pytest.fixture
async def two_nodes(tmp_path: Path, store_url: str, cache: StandInCache) -> AsyncIterator[tuple[Node, Node]]:
    cache.ring = DomainKeyRing.generate()
    # Long key-cache TTLs, so that what a node caches is certain: B keeps the old blob of a key in its cache.
    a = await build_node(cluster_settings(tmp_path, "a", store_url, cache, key_cache_ttl_ms=600_000))
    b = await build_node(cluster_settings(tmp_path, "b", store_url, cache, key_cache_ttl_ms=600_000))
    try:
        yield a, b
    finally:
        for node in (a, b):
            await node.core.close()
            await node.store.close()


async def test_node_b_follows_a_rotation_on_demand(two_nodes: tuple[Node, Node], cache: StandInCache) -> None:
    a, b = two_nodes
    assert a.core.ready and b.core.ready
    made = await apps.enroll(a, "open", None)
    on_a = Caller(a, made["appid"], made["apikey"])
    on_b = on_a.on(b)
    old_key = (await on_a.call("CreateKey", AES))["keyid"]
    old_ct = (await on_a.call("Encrypt", {"keyid": old_key, "plaintext": "b2xk"}))["ciphertext"]
    assert (await on_b.call("Decrypt", {"keyid": old_key, "ciphertext": old_ct}))["plaintext"] == "b2xk"

    assert cache.rotate() == 2
    await a.core.call(Call(op="ring_refresh", args={"reason": "test"}))  # A's periodic refresh, driven here
    assert (await ring(a), await ring(b)) == (2, 1)
    new_key = (await on_a.call("CreateKey", AES))["keyid"]
    stored = await a.store.get_key(new_key)
    assert stored is not None and dk_version_of(stored[1].blob) == 2  # new blobs: the current version
    new_ct = (await on_a.call("Encrypt", {"keyid": new_key, "plaintext": "bmV3"}))["ciphertext"]
    fresh = await apps.enroll(a, "open", None)  # an APIKey blob under version 2
    fresh_app = await a.store.get_app(fresh["appid"])
    assert fresh_app is not None and dk_version_of(fresh_app.apikey_blob) == 2

    # B has not refreshed (its interval is 10 minutes), yet none of these fails: it fetches the ring on demand.
    assert (await on_b.call("Decrypt", {"keyid": new_key, "ciphertext": new_ct}))["plaintext"] == "bmV3"
    assert await ring(b) == 2
    assert (await on_b.call("Decrypt", {"keyid": old_key, "ciphertext": old_ct}))["plaintext"] == "b2xk"
    fresh_on_b = Caller(b, fresh["appid"], fresh["apikey"])
    b_key = (await fresh_on_b.call("CreateKey", AES))["keyid"]
    stored_b = await b.store.get_key(b_key)
    assert stored_b is not None and dk_version_of(stored_b[1].blob) == 2

    # Rewrap (here on A) while B's cache still holds the old blob of old_key: the old blob still opens on B
    # (version 1 stays in the ring), and once B reads the rewrapped row, that opens too.
    report = await rewrap.rewrap_all(a, batch_size=2)
    assert report.complete and report.rewrapped["cmk"] == 1 and report.rewrapped["apikey"] == 1
    stored_old = await a.store.get_key(old_key)
    assert stored_old is not None and dk_version_of(stored_old[1].blob) == 2
    assert (await on_b.call("Decrypt", {"keyid": old_key, "ciphertext": old_ct}))["plaintext"] == "b2xk"
    b.forget_key(old_key)
    b.forget_app(made["appid"])
    assert (await on_b.call("Decrypt", {"keyid": old_key, "ciphertext": old_ct}))["plaintext"] == "b2xk"
    assert await rewrap.stale_counts(b) == dict.fromkeys(report.rewrapped, 0)


async def test_a_periodic_refresh_follows_a_rotation(tmp_path: Path, store_url: str, cache: StandInCache) -> None:
    cache.ring = DomainKeyRing.generate()
    node = await build_node(cluster_settings(tmp_path, "p", store_url, cache, dk_refresh_interval_ms=100))
    try:
        assert await ring(node) == 1
        cache.rotate()
        deadline = time.monotonic() + 10
        while await ring(node) != 2:
            assert time.monotonic() < deadline, "the periodic refresh did not pick up the rotation"
            await asyncio.sleep(0.05)
        status = await rewrap.ring_status(node)
        assert status["versions"] == [1, 2] and status["mode"] == "cluster"
    finally:
        await node.core.close()
        await node.store.close()


async def test_a_ring_that_does_not_extend_the_held_one_is_refused(
    tmp_path: Path, store_url: str, cache: StandInCache, caplog: pytest.LogCaptureFixture
) -> None:
    cache.ring = DomainKeyRing.generate()
    node = await build_node(cluster_settings(tmp_path, "r", store_url, cache))
    try:
        made = await apps.enroll(node, "open", None)
        app = Caller(node, made["appid"], made["apikey"])
        keyid = (await app.call("CreateKey", AES))["keyid"]
        ct = (await app.call("Encrypt", {"keyid": keyid, "plaintext": "a2VlcA=="}))["ciphertext"]
        held = cache.ring
        assert held is not None
        cache.ring = DomainKeyRing.generate()  # another cluster's ring, say
        cache.rotate()  # even with a newer current version
        with caplog.at_level(logging.ERROR, logger="ehsm_kms.core"):
            result = await node.core.call(Call(op="ring_refresh", args={"reason": "test"}))
        assert result["changed"] is False and result["dk_version"] == 1
        assert "differs from the one this core holds" in result["refused"]
        assert "refused the domain-key ring" in caplog.text
        assert (await app.call("Decrypt", {"keyid": keyid, "ciphertext": ct}))["plaintext"] == "a2VlcA=="
        # A ring that lacks a version held is refused as well; the real one, rotated, is adopted.
        cache.ring = DomainKeyRing({2: held.key(1)}, 2)
        result = await node.core.call(Call(op="ring_refresh", args={"reason": "test"}))
        assert result["changed"] is False and "lacks domain-key version 1" in result["refused"]
        cache.ring = held
        cache.rotate()
        result = await node.core.call(Call(op="ring_refresh", args={"reason": "test"}))
        assert result["changed"] is True and result["dk_version"] == 2 and result["refused"] == ""
    finally:
        await node.core.close()
        await node.store.close()


async def test_a_cluster_node_does_not_rotate_the_domain_key_itself(
    tmp_path: Path, store_url: str, cache: StandInCache
) -> None:
    cache.ring = DomainKeyRing.generate()
    node = await build_node(cluster_settings(tmp_path, "n", store_url, cache))
    try:
        banner = io.StringIO()
        assert await admin.ensure_admin_credential(node, out=banner)
        admin_id, admin_key = admin_credential(banner.getvalue())
        with pytest.raises(errors.ConfigError, match="rotated on the dkeyserver"):
            await rewrap.rotate_dk(node, admin_id, admin_key)
        with pytest.raises(errors.AdminAuthError):  # and without the admin's signature, nothing at all
            await rewrap.rotate_dk(node, admin_id, "y" * 32)
        assert await ring(node) == 1
    finally:
        await node.core.close()
        await node.store.close()
