"""``ehsm-kms key set-min-decrypt-version|set-rotation|set-description``, ``ehsm-kms remote-admin ...`` and
``ehsm-kms enroll --attest`` refusals, with CliRunner and as a subprocess against the suite's live server."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehsm_kms import errors
from tests.cli.harness import Cli, Enrolled
from tests.client.harness import admin_from_log
from tests.live import LiveServer

TPM_POLICY = "kind = 'tpm2'\ntrusted_ak = '000b" + "00" * 32 + "'\n[pcrs.sha256]\n0 = '" + "00" * 32 + "'\n"


@pytest.fixture
def admin_env(live_server: LiveServer, tmp_path: Path) -> dict[str, str]:
    """The admin id in the environment, the admin key in a file (never on the command line)."""
    ident, key = admin_from_log(live_server.log())
    key_file = tmp_path / "admin.key"
    key_file.write_text(key + "\n")
    return {"EHSM_KMS_ADMIN_ID": ident, "ADMIN_KEY_FILE": str(key_file), "ADMIN_KEY": key}


def test_key_settings(cli: Cli, enrolled: Enrolled) -> None:
    keyid = cli.json("key", "create")["keyid"]
    old = cli.ok("encrypt", "--keyid", keyid, "--text", "v1").stdout
    cli.ok("key", "rotate", "--keyid", keyid)
    assert cli.json("key", "set-min-decrypt-version", "--keyid", keyid, "--version", "2") == {
        "keyid": keyid,
        "minDecryptVersion": 2,
    }
    retired = cli.run("decrypt", "--keyid", keyid, input=old)
    assert retired.exit_code == errors.EXIT_BAD_REQUEST and "retired" in retired.stderr
    assert (
        "decrypts from version 1" in cli.ok("key", "set-min-decrypt-version", "--keyid", keyid, "--version", "1").stdout
    )
    assert cli.ok("decrypt", "--keyid", keyid, input=old).stdout == "v1"
    above = cli.run("key", "set-min-decrypt-version", "--keyid", keyid, "--version", "9")
    assert above.exit_code == errors.EXIT_BAD_REQUEST and "primary version" in above.stderr

    rotation = cli.json("key", "set-rotation", "--keyid", keyid, "--days", "90")
    assert rotation["rotationPeriod"] == 90 and rotation["nextRotationDate"] > 0
    assert "rotates every 90 days" in cli.ok("key", "set-rotation", "--keyid", keyid, "--days", "90").stdout
    assert cli.json("key", "describe", "--keyid", keyid)["rotationPeriod"] == 90
    assert "only when asked" in cli.ok("key", "set-rotation", "--keyid", keyid, "--days", "0").stdout
    assert cli.run("key", "set-rotation", "--keyid", keyid, "--days", "-1").exit_code == errors.EXIT_USAGE

    assert "description set" in cli.ok("key", "set-description", "--keyid", keyid, "--description", "ops").stdout
    assert cli.json("key", "describe", "--keyid", keyid)["description"] == "ops"
    cli.ok("key", "set-description", "--keyid", keyid)
    assert cli.json("key", "describe", "--keyid", keyid)["description"] is None


def test_remote_admin(cli: Cli, enrolled: Enrolled, admin_env: dict[str, str]) -> None:
    env = {"EHSM_KMS_ADMIN_ID": admin_env["EHSM_KMS_ADMIN_ID"]}
    key_file = ("--admin-key-file", admin_env["ADMIN_KEY_FILE"])
    url = ("--url", cli.url)
    listed = cli.json("remote-admin", "list-apps", *url, *key_file, env=env)
    assert any(a["appid"] == enrolled.appid and a["state"] == "active" for a in listed)
    assert enrolled.appid in cli.ok("remote-admin", "list-apps", *url, *key_file, env=env).stdout
    shown = cli.json("remote-admin", "show-app", enrolled.appid, *url, *key_file, env=env)
    assert (shown["appid"], shown["keys"]) == (enrolled.appid, 0)

    # The key from standard input, and from the environment.
    revoked = cli.json(
        "remote-admin",
        "revoke-app",
        enrolled.appid,
        *url,
        "--admin-key-file",
        "-",
        input=admin_env["ADMIN_KEY"],
        env=env,
    )
    assert revoked["state"] == "revoked"
    refused = cli.run("key", "list")
    assert refused.exit_code == errors.EXIT_AUTH and "app revoked" in refused.stderr
    with_env = dict(env, EHSM_KMS_ADMIN_KEY=admin_env["ADMIN_KEY"])
    assert "state:   active" in cli.ok("remote-admin", "restore-app", enrolled.appid, *url, env=with_env).stdout
    cli.ok("key", "list")

    rotated = cli.json("remote-admin", "rotate-apikey", enrolled.appid, *url, env=with_env)
    assert rotated["appid"] == enrolled.appid and len(rotated["apikey"]) == 32
    assert cli.run("key", "list").exit_code == errors.EXIT_AUTH  # the profile's APIKey is the old one
    fresh = {"EHSM_KMS_APPID": enrolled.appid, "EHSM_KMS_APIKEY": rotated["apikey"], "EHSM_KMS_URL": cli.url}
    cli.ok("key", "list", env=fresh)

    token = cli.json("remote-admin", "issue-enroll-token", *url, "--ttl-hours", "1", env=with_env)
    assert len(token["token"]) >= 32 and token["expireTime"] > 0
    missing = cli.run("remote-admin", "show-app", "no-such-app", *url, env=with_env)
    assert missing.exit_code == errors.EXIT_NOT_FOUND and "app not found" in missing.stderr


def test_remote_admin_needs_the_admin_credential(cli: Cli, admin_env: dict[str, str], tmp_path: Path) -> None:
    url = ("--url", cli.url)
    no_id = cli.run("remote-admin", "list-apps", *url, "--admin-key-file", admin_env["ADMIN_KEY_FILE"])
    assert no_id.exit_code == errors.EXIT_USAGE and "no admin id" in no_id.stderr
    env = {"EHSM_KMS_ADMIN_ID": admin_env["EHSM_KMS_ADMIN_ID"]}
    no_key = cli.run("remote-admin", "list-apps", *url, env=env)  # CliRunner's stdin is not a terminal
    assert no_key.exit_code == errors.EXIT_USAGE and "no admin key" in no_key.stderr
    assert cli.run("remote-admin", "list-apps", *url, "--admin-key", "x", env=env).exit_code == errors.EXIT_USAGE


def test_remote_admin_and_key_settings_as_subprocesses(
    cli: Cli, enrolled: Enrolled, admin_env: dict[str, str], tmp_path: Path
) -> None:
    env = {"EHSM_KMS_ADMIN_ID": admin_env["EHSM_KMS_ADMIN_ID"], "EHSM_KMS_URL": cli.url}
    ok = cli.spawn("remote-admin", "show-app", enrolled.appid, "--admin-key-file", admin_env["ADMIN_KEY_FILE"], env=env)
    assert ok.returncode == 0 and enrolled.appid.encode() in ok.stdout
    assert admin_env["ADMIN_KEY"].encode() not in ok.stdout + ok.stderr
    wrong = tmp_path / "wrong.key"
    wrong.write_text("y" * 32)
    denied = cli.spawn("remote-admin", "list-apps", "--admin-key-file", str(wrong), env=env)
    assert denied.returncode == errors.EXIT_AUTH and b"admin sign error" in denied.stderr
    assert b"Traceback" not in denied.stderr

    keyid = cli.ok("key", "create").stdout.strip()
    above = cli.spawn("key", "set-min-decrypt-version", "--keyid", keyid, "--version", "3")
    assert above.returncode == errors.EXIT_BAD_REQUEST and b"primary version" in above.stderr


def test_enroll_attest_refuses_plain_http(cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(TPM_POLICY)
    done = cli.run("enroll", "--url", cli.url, "--attest", str(policy))
    assert done.exit_code == errors.EXIT_CRYPTO and "needs https://" in done.stderr
    assert "apikey" not in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("kind = 'tpm2'\n")
    broken = cli.run("enroll", "--url", cli.url.replace("http://", "https://"), "--attest", str(bad))
    assert broken.exit_code == errors.EXIT_USAGE and "policy" in broken.stderr
