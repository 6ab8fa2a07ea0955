"""``ehsm-kms`` as a subprocess against a live server, as an operator or a script runs it: credentials from the
environment the original SDK's users already set, binary pipes, exit codes, and encrypt-file/decrypt-file with
every kind of damage (one changed byte, truncation, swapped chunks, the wrong key) failing cleanly.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from ehsm_kms import errors
from ehsm_kms.client import envelope as env
from tests.cli.harness import Cli, Enrolled


@pytest.fixture
def legacy_env(cli: Cli) -> dict[str, str]:
    made = cli.json("enroll", "--url", cli.url)
    return {"EHSM_SERVER_URL": cli.url + "/ehsm", "EHSM_APPID": made["appid"], "EHSM_APIKEY": made["apikey"]}


def test_a_script_with_the_original_environment(cli: Cli, legacy_env: dict[str, str]) -> None:
    created = cli.spawn("key", "create", env=legacy_env)
    assert created.returncode == 0, created.stderr
    keyid = created.stdout.decode().strip()
    blob = os.urandom(3000)
    sealed = cli.spawn("encrypt", "--keyid", keyid, "--binary", input=blob, env=legacy_env)
    assert sealed.returncode == 0 and sealed.stdout != blob
    opened = cli.spawn("decrypt", "--keyid", keyid, "--binary", input=sealed.stdout, env=legacy_env)
    assert opened.returncode == 0 and opened.stdout == blob
    assert legacy_env["EHSM_APIKEY"].encode() not in created.stderr + sealed.stderr + opened.stderr

    failures = {
        errors.EXIT_NOT_FOUND: ("encrypt", "--keyid", "00000000-0000-0000-0000-000000000000", "--text", "x"),
        errors.EXIT_CRYPTO: ("decrypt", "--keyid", keyid, "--binary"),
        errors.EXIT_USAGE: ("encrypt", "--no-such-flag"),
    }
    for code, args in failures.items():
        done = cli.spawn(*args, input=b"\x01" * 50, env=legacy_env)
        assert done.returncode == code, (args, done.stderr)
        assert done.stderr and b"Traceback" not in done.stderr
    wrong = dict(legacy_env, EHSM_APIKEY="y" * 32)
    assert cli.spawn("key", "list", env=wrong).returncode == errors.EXIT_AUTH
    down = dict(legacy_env, EHSM_SERVER_URL="http://127.0.0.1:9/ehsm")
    refused = cli.spawn("key", "list", env=down)
    assert refused.returncode == errors.EXIT_CONNECTION and b"cannot reach the KMS" in refused.stderr


@pytest.fixture
def sealed_file(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> tuple[str, Path, Path]:
    keyid = cli.ok("key", "create").stdout.strip()
    plain = tmp_path / "plain.bin"
    plain.write_bytes(os.urandom(5 * 4096 + 123))
    sealed = tmp_path / "plain.bin.ehks"
    done = cli.ok("encrypt-file", "--keyid", keyid, "--chunk-size", "4KiB", str(plain), str(sealed))
    assert "encrypted 20603 bytes in 6 chunks" in done.stderr
    return keyid, plain, sealed


def _decrypt_fails(
    cli: Cli,
    damaged: bytes,
    tmp_path: Path,
    code: int = errors.EXIT_CRYPTO,
    flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> str:
    src = tmp_path / "damaged.ehks"
    src.write_bytes(damaged)
    out = tmp_path / "out.bin"
    done = cli.spawn("decrypt-file", *flags, str(src), str(out), env=env)
    assert done.returncode == code, done.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    text = done.stderr.decode()
    assert text.startswith("error: ") and "Traceback" not in text
    return text


def test_encrypt_file_and_decrypt_file(cli: Cli, sealed_file: tuple[str, Path, Path], tmp_path: Path) -> None:
    keyid, plain, sealed = sealed_file
    out = tmp_path / "back.bin"
    done = cli.spawn("decrypt-file", str(sealed), str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"keyid": keyid, "plaintextBytes": 20603, "chunks": 6, "chunkSize": 4096}
    assert out.read_bytes() == plain.read_bytes()
    exists = cli.spawn("decrypt-file", str(sealed), str(out))
    assert exists.returncode == errors.EXIT_USAGE and b"--force" in exists.stderr
    with_bar = cli.spawn("decrypt-file", "--force", "--progress", str(sealed), str(out))
    assert with_bar.returncode == 0 and b"decrypting" in with_bar.stderr  # click's bar (a label when not a tty)
    # Pipes: standard input to standard output.
    piped = cli.spawn("encrypt-file", "--keyid", keyid, "-", "-", input=b"streamed")
    assert piped.returncode == 0 and piped.stdout.startswith(b"EHKS")
    back = cli.spawn("decrypt-file", "-", "-", input=piped.stdout)
    assert back.returncode == 0 and back.stdout == b"streamed"


def test_one_changed_byte_fails(cli: Cli, sealed_file: tuple[str, Path, Path], tmp_path: Path) -> None:
    _, _, sealed = sealed_file
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x04
    assert "chunk 2 fails authentication" in _decrypt_fails(cli, bytes(data), tmp_path)
    header = bytearray(sealed.read_bytes())
    header[8] ^= 0x01  # the chunk size
    assert "fails authentication" in _decrypt_fails(cli, bytes(header), tmp_path)


def test_a_truncated_file_fails(cli: Cli, sealed_file: tuple[str, Path, Path], tmp_path: Path) -> None:
    _, _, sealed = sealed_file
    data = sealed.read_bytes()
    assert "chunk 5 fails authentication" in _decrypt_fails(cli, data[:-1], tmp_path)
    last = len(data) - (123 + 16)
    assert "ends before its final chunk" in _decrypt_fails(cli, data[:last], tmp_path)
    assert "truncated inside its header" in _decrypt_fails(cli, data[:40], tmp_path)


def test_swapped_chunks_fail(cli: Cli, sealed_file: tuple[str, Path, Path], tmp_path: Path) -> None:
    _, _, sealed = sealed_file
    data = sealed.read_bytes()
    _, encoded, tag = env.read_header(io.BytesIO(data))
    start, frame = len(encoded) + len(tag), 4096 + 16
    chunks = [data[start + i * frame : start + (i + 1) * frame] for i in range(6)]
    swapped = data[:start] + chunks[0] + chunks[2] + chunks[1] + b"".join(chunks[3:])
    assert "chunk 1 fails authentication" in _decrypt_fails(cli, swapped, tmp_path)


def test_the_wrong_key_fails(cli: Cli, sealed_file: tuple[str, Path, Path], tmp_path: Path) -> None:
    _, _, sealed = sealed_file
    data = sealed.read_bytes()
    header, encoded, tag = env.read_header(io.BytesIO(data))
    other = cli.ok("key", "create").stdout.strip()
    forged = env.Header(other, header.wrapped_key, header.chunk_size, header.message_nonce, header.aad)
    rewritten = forged.encode() + tag + data[len(encoded) + len(tag) :]
    assert f"does not decrypt under key {other}" in _decrypt_fails(cli, rewritten, tmp_path)
    # Another app may not use the key at all.
    stranger = cli.json("enroll", "--url", cli.url)
    as_stranger = {"EHSM_KMS_APPID": stranger["appid"], "EHSM_KMS_APIKEY": stranger["apikey"]}
    assert "keyid error" in _decrypt_fails(cli, data, tmp_path, code=errors.EXIT_NOT_FOUND, env=as_stranger)
    assert "no EHKS header" in _decrypt_fails(cli, b"plain text, never encrypted", tmp_path)


def test_associated_data_is_checked(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    keyid = cli.ok("key", "create").stdout.strip()
    plain, sealed, out = tmp_path / "p", tmp_path / "p.ehks", tmp_path / "o"
    plain.write_bytes(b"bound")
    assert cli.spawn("encrypt-file", "--keyid", keyid, "--aad", "tenant=7", str(plain), str(sealed)).returncode == 0
    assert cli.spawn("decrypt-file", "--aad", "tenant=7", str(sealed), str(out)).returncode == 0
    assert out.read_bytes() == b"bound"
    out.unlink()
    assert "associated data" in _decrypt_fails(cli, sealed.read_bytes(), tmp_path, flags=("--aad", "tenant=8"))


def test_enrollment_tokens(tmp_path: Path) -> None:
    """A server in enroll_mode=token: the token from ``admin issue-enroll-token`` enrolls one app, once."""
    from ehsm_kms.client import Client
    from tests.live import LiveServer

    data, store = tmp_path / "server", f"sqlite:///{tmp_path}/server/kms.db"
    server = LiveServer(data, store, extra=["--enroll-mode", "token"]).start()
    cli = Cli(tmp_path / "config", server.url)
    try:
        issued = [cli.spawn("admin", "issue-enroll-token", "--data-dir", str(data), "--store-url", store) for _ in "ab"]
        assert all(done.returncode == 0 for done in issued), issued
        first, second = (done.stdout.decode().strip() for done in issued)
        refused = cli.run("enroll", "--url", server.url)
        assert refused.exit_code == errors.EXIT_AUTH and "enrollment token" in refused.stderr
        token_file = tmp_path / "token"
        token_file.write_text(first + "\n")
        cli.ok("enroll", "--url", server.url, "--token-file", str(token_file), "--save-profile", "default")
        assert cli.json("key", "list") == []
        again = cli.run("enroll", "--url", server.url, "--token-file", str(token_file))
        assert again.exit_code == errors.EXIT_AUTH
        with Client(server.url, appid="", apikey="") as client:
            with pytest.raises(errors.EnrollRefused):
                client.enroll()
            assert client.enroll(second).appid == client.appid
            assert client.list_keys() == ()
        from_env = cli.run("enroll", "--url", server.url, env={"EHSM_KMS_ENROLL_TOKEN": second})
        assert from_env.exit_code == errors.EXIT_AUTH  # used up by the SDK above
    finally:
        server.stop()
