"""The parts without a TPM: the release audit's chain, the ring holder and backoff, addresses, the gate, the
dkeycache's socket server in-process, and the CLI's usage errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import ssl
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from ehsm_kms import errors
from ehsm_kms.cli.main import main
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.ringfetch import CacheReply, fetch_ring, frame, read_frame
from ehsm_kms.provisioning.attest import KindRefused, policy_from_mapping
from ehsm_kms.provisioning.audit import ReleaseAudit, verify_audit
from ehsm_kms.provisioning.dkcache import NO_RING, CacheServer
from ehsm_kms.provisioning.dkprotocol import Endpoint
from ehsm_kms.provisioning.gate import Gate
from ehsm_kms.provisioning.holder import Refresher, RingHolder
from ehsm_kms.provisioning.localsock import remove_stale_socket

log = logging.getLogger("test")


# ---------------------------------------------------------------- audit
def _audit(tmp_path: Path, n: int = 5) -> ReleaseAudit:
    audit = ReleaseAudit(tmp_path)
    for i in range(n):
        audit.append("release", peer=f"127.0.0.1:{1000 + i}", role="cache", kind="tpm2", dk_version=1)
    return audit


def test_the_audit_chain_verifies_and_continues_after_a_restart(tmp_path: Path) -> None:
    _audit(tmp_path, 3)
    ReleaseAudit(tmp_path).append("refuse", reason="x")  # a new process continues the same chain
    report = verify_audit(tmp_path)
    assert report.intact and report.records == 4 and report.last_seq == 4
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("damage", ["remove", "change", "cut_end", "swap"])
def test_the_audit_chain_shows_each_kind_of_damage(tmp_path: Path, damage: str) -> None:
    _audit(tmp_path)
    path = tmp_path / "audit.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    if damage == "remove":
        lines.pop(2)
    elif damage == "change":
        record = json.loads(lines[1])
        record["role"] = "worker"
        lines[1] = json.dumps(record) + "\n"
    elif damage == "cut_end":
        lines.pop()
    else:
        lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    report = verify_audit(tmp_path)
    assert not report.intact, damage


# ---------------------------------------------------------------- holder, backoff, addresses
def test_the_holder_never_goes_back_to_an_older_version() -> None:
    old = DomainKeyRing.generate()
    new = DomainKeyRing.from_bytes(old.to_bytes())
    new.rotate()
    holder = RingHolder()
    assert holder.offer(new) and holder.ring is new
    assert not holder.offer(old) and holder.ring is new


def test_backoff_is_exponential_bounded_and_jittered() -> None:
    holder = RingHolder()
    ref = Refresher([Endpoint("127.0.0.1", 1)], ssl.create_default_context(), role="cache", provider=None,
                    holder=holder, log=log, interval=5.0, backoff_initial=0.5, backoff_max=8.0)  # fmt: skip
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (50, 8.0)]:
        delays = {ref.delay(failures) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
    holder.replace(DomainKeyRing.generate())  # holding a ring: never wait longer than the refresh interval
    assert all(ref.delay(50) <= 5.0 for _ in range(20))


def test_the_refresher_tries_each_server_in_turn() -> None:
    ring = DomainKeyRing.generate()
    tried: list[Endpoint] = []

    def fetch(endpoint: Endpoint, ctx: object, **kw: object) -> DomainKeyRing:
        tried.append(endpoint)
        if endpoint.port == 1:
            raise errors.CoreUnavailable("down")
        if endpoint.port == 2:
            raise ValueError("a surprise")
        return ring

    servers = [Endpoint("127.0.0.1", 1), Endpoint("127.0.0.1", 2), Endpoint("127.0.0.1", 3)]
    ref = Refresher(servers, ssl.create_default_context(), role="cache", provider=None, holder=RingHolder(), log=log,
                    fetch=fetch)  # fmt: skip
    assert ref.fetch_once() is ring and tried == servers


@pytest.mark.parametrize("text", ["127.0.0.1", "host:", ":80", "h:0", "h:70000", "h:x"])
def test_bad_addresses_are_config_errors(text: str) -> None:
    with pytest.raises(errors.ConfigError):
        Endpoint.parse(text)


def test_addresses_parse() -> None:
    assert Endpoint.parse("dks.example:8888") == Endpoint("dks.example", 8888)
    assert Endpoint.parse("[::1]:9") == Endpoint("::1", 9)


# ---------------------------------------------------------------- gate
def test_a_none_policy_counts_only_with_the_allow_flag() -> None:
    none = policy_from_mapping({"kind": "none"})
    closed = Gate([none])
    assert closed.ignored and not closed.policies
    with pytest.raises(KindRefused, match="unattested"):
        closed.check_kind("none")
    opened = Gate([none], allow_unattested=True)
    opened.check_kind("none")
    with pytest.raises(KindRefused, match="no policy for tpm2"):
        opened.check_kind("tpm2")


def test_a_dcap_policy_needs_collateral() -> None:
    sgx = policy_from_mapping({"kind": "sgx-dcap", "mr_signer": ["00" * 32]})
    with pytest.raises(errors.ConfigError, match="collateral"):
        Gate([sgx])


def test_no_policy_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="at least one"):
        Gate.load([])


# ---------------------------------------------------------------- the dkeycache's socket, in-process
def _ask(path: Path, body: bytes) -> CacheReply:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(frame(body))
        return msgspec.msgpack.decode(read_frame(sock), type=CacheReply)


def test_the_cache_socket(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    holder = RingHolder()

    async def scenario() -> None:
        server = await CacheServer(holder, [os.getuid()]).serve(path, mode=0o600)
        async with server:
            assert path.stat().st_mode & 0o777 == 0o600

            def checks() -> None:
                with pytest.raises(errors.CoreUnavailable, match=NO_RING):
                    fetch_ring(str(path))
                ring = DomainKeyRing.generate()
                holder.replace(ring)
                assert fetch_ring(str(path)) == ring
                assert _ask(path, b"\xc1garbage").error == "malformed request"
                bad = msgspec.msgpack.encode({"public": b"x" * 32, "op": "delete", "v": 1})
                assert _ask(path, bad).error == "unknown request"

            await asyncio.to_thread(checks)

    asyncio.run(scenario())
    with pytest.raises(errors.ConfigError, match="mode"):
        asyncio.run(CacheServer(holder, [0]).serve(tmp_path / "d.sock", mode=0o666))


def test_a_stale_socket_file_is_replaced_but_nothing_else(tmp_path: Path) -> None:
    stale = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))
    remove_stale_socket(stale)
    assert not stale.exists()
    plain = tmp_path / "file"
    plain.write_text("not a socket")
    with pytest.raises(errors.ConfigError, match="not a socket"):
        remove_stale_socket(plain)


# ---------------------------------------------------------------- CLI usage errors
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dkeyserver", "--data-dir", "/nonexistent"], "--role"),
        (["dkeyserver", "--role", "root", "--data-dir", "/tmp/x"], "at least one attestation policy"),
        (["dkeycache", "--socket", "/tmp/x.sock"], "at least one dkeyserver"),
        (["dkeycache", "--server", "h:1", "--server-ca", "/etc/hostname", "--evidence", "none"], "development only"),
        (["dkeyserver", "rotate", "--data-dir", "/nonexistent"], "no dkeyserver answers"),
    ],
)
def test_cli_errors_are_clear(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output


def test_options_come_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["dkeyserver", "verify-audit"], env={"EHSM_KMS_DKS_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0 and "0 records" in result.output
