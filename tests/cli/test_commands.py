"""The client commands with click's ``CliRunner``, against a live server: output, ``--json``, exit codes, profiles."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import tomllib
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ehsm_kms import errors
from tests.cli.harness import Cli, Enrolled
from tests.client.harness import require_secret_actions
from tests.live import free_port


# ------------------------------------------------------------------------------------------ enroll and profiles
def test_enroll_saves_a_private_profile(cli: Cli) -> None:
    result = cli.ok("enroll", "--url", cli.url, "--save-profile", "default")
    data = tomllib.loads(cli.config_file.read_text())["profiles"]["default"]
    assert data["url"] == cli.url and len(data["apikey"]) == 32
    assert data["apikey"] not in result.output  # stored, never printed
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_file.parent.stat().st_mode) == 0o700
    listed = cli.ok("profile", "list")
    assert "default" in listed.stdout and "stored" in listed.stdout and data["apikey"] not in listed.stdout
    assert cli.json("profile", "list")[0]["apikey"] == "stored"
    # Commands now need no flags at all.
    assert cli.json("key", "list") == []


def test_enroll_prints_credentials_without_a_profile(cli: Cli) -> None:
    made = cli.json("enroll", "--url", cli.url)
    assert set(made) == {"appid", "apikey"} and len(made["apikey"]) == 32
    human = cli.ok("enroll", "--url", cli.url).stdout
    assert human.startswith("appid:  ") and "apikey: " in human
    assert not cli.config_file.exists()


def test_profiles_add_list_remove(cli: Cli, tmp_path: Path) -> None:
    made = cli.json("enroll", "--url", cli.url)
    # A hidden prompt: the APIKey typed is not echoed.
    added = cli.ok("profile", "add", "work", "--url", cli.url, "--appid", made["appid"], input=made["apikey"] + "\n")
    assert made["apikey"] not in added.output
    assert cli.json("key", "list", "--profile", "work") == []
    keyfile = tmp_path / "apikey"
    keyfile.write_text(made["apikey"] + "\n")
    cli.ok("profile", "add", "byfile", "--url", cli.url, "--appid", made["appid"], "--apikey-file", str(keyfile))
    entry = tomllib.loads(cli.config_file.read_text())["profiles"]["byfile"]
    assert "apikey" not in entry and entry["apikey_file"] == str(keyfile)  # referenced, not copied
    assert cli.json("key", "list", "--profile", "byfile") == []
    assert {p["name"] for p in cli.json("profile", "list")} == {"work", "byfile"}
    cli.ok("profile", "remove", "work")
    assert {p["name"] for p in cli.json("profile", "list")} == {"byfile"}
    missing = cli.run("key", "list", "--profile", "work")
    assert missing.exit_code == errors.EXIT_USAGE and "no profile named 'work'" in missing.output
    assert cli.run("profile", "add", "bad name!", "--url", cli.url, "--appid", "a", input="k\n").exit_code == 2
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600


def test_where_credentials_come_from(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    other = cli.json("enroll", "--url", cli.url)
    env = {"EHSM_SERVER_URL": cli.url, "EHSM_APPID": other["appid"], "EHSM_APIKEY": other["apikey"]}
    keyid = cli.ok("key", "create", env=env).stdout.strip()
    # The environment (the original SDK's names) comes before the default profile ...
    assert [k["keyid"] for k in cli.json("key", "list", env=env)] == [keyid]
    # ... an explicit --profile before the environment ...
    assert cli.json("key", "list", "--profile", "default", env=env) == []
    # ... and the command line before both.
    keyfile = tmp_path / "key"
    keyfile.write_text(enrolled.apikey)
    flags = ("--appid", enrolled.appid, "--apikey-file", str(keyfile))
    assert cli.json("key", "list", *flags, env=env) == []
    assert cli.json("key", "list", "--appid", enrolled.appid, "--apikey-file", "-", input=enrolled.apikey) == []


def test_the_apikey_is_never_an_option(cli: Cli, enrolled: Enrolled) -> None:
    result = cli.run("key", "list", "--apikey", enrolled.apikey)
    assert result.exit_code == errors.EXIT_USAGE and "No such option" in result.output


# ------------------------------------------------------------------------------------------ keys
def test_key_commands(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    aes = cli.ok("key", "create").stdout.strip()
    rsa_key = cli.json("key", "create", "--keyspec", "rsa2048", "--keyusage", "encrypt")["keyid"]
    table = cli.ok("key", "list").stdout.splitlines()
    assert table[0].split() == ["KEYID", "KEYSPEC", "STATE", "CREATED", "EXPIRES", "ALIAS"]
    assert {line.split()[0] for line in table[1:]} == {aes, rsa_key}
    listed = {k["keyid"]: k for k in cli.json("key", "list")}
    assert listed[rsa_key]["keyspec"] == "EH_RSA_2048" and listed[aes]["keyState"] == 1

    assert cli.ok("key", "disable", "--keyid", aes).stdout.strip() == f"disabled {aes}"
    assert cli.json("key", "list")[0]["keyState"] in (0, 1)
    disabled = cli.run("encrypt", "--keyid", aes, "--text", "x")
    assert disabled.exit_code == errors.EXIT_BAD_REQUEST and "keyid is disabled" in disabled.stderr
    cli.ok("key", "enable", "--keyid", aes)
    cli.ok("encrypt", "--keyid", aes, "--text", "x")

    pem = cli.ok("key", "public-key", "--keyid", rsa_key).stdout
    assert pem.startswith("-----BEGIN RSA PUBLIC KEY-----")

    refused = cli.run("key", "delete", "--keyid", aes, input="n\n")
    assert refused.exit_code == 1 and len(cli.json("key", "list")) == 2
    cli.ok("key", "delete", "--keyid", aes, input="y\n")
    gone = cli.run("encrypt", "--keyid", aes, "--text", "x")
    assert gone.exit_code == errors.EXIT_NOT_FOUND and "keyid error" in gone.stderr
    cli.ok("key", "delete-all", "--yes")
    assert cli.json("key", "list") == []


def test_byok_import(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    # Both steps in one command.
    keyid = cli.ok("key", "create", "--keyspec", "aes128", "--origin", "external").stdout.strip()
    material = tmp_path / "key.bin"
    material.write_bytes(os.urandom(16))
    cli.ok("key", "import", "--keyid", keyid, "--material-file", str(material))
    ciphertext = cli.ok("encrypt", "--keyid", keyid, "--text", "imported").stdout
    assert cli.ok("decrypt", "--keyid", keyid, input=ciphertext).stdout == "imported"

    # Step by step, wrapped elsewhere.
    other = cli.ok("key", "create", "--keyspec", "EH_AES_GCM_256", "--origin", "EH_EXTERNAL_KEY").stdout.strip()
    params = cli.json("key", "import-params", "--keyid", other, "--wrapping-keyspec", "EH_RSA_3072")
    public = serialization.load_pem_public_key(params["pubkey"].encode())
    assert isinstance(public, rsa.RSAPublicKey)
    wrapped = tmp_path / "wrapped.bin"
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    wrapped.write_bytes(public.encrypt(os.urandom(32), oaep))
    flags = ("--wrapped-file", str(wrapped), "--import-token", params["importToken"])
    assert cli.json("key", "import", "--keyid", other, *flags)["result"] is True
    again = cli.run("key", "import", "--keyid", other, *flags)
    assert again.exit_code == errors.EXIT_CRYPTO and "ImportToken failed." in again.stderr
    assert cli.run("key", "import", "--keyid", other).exit_code == errors.EXIT_USAGE


# ------------------------------------------------------------------------------------------ cryptography
def test_encrypt_and_decrypt(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    keyid = cli.ok("key", "create").stdout.strip()
    ciphertext = cli.ok("encrypt", "--keyid", keyid, "--aad", "ctx", input="text from stdin").stdout
    assert ciphertext.endswith("\n") and base64.b64decode(ciphertext.strip())
    assert cli.ok("decrypt", "--keyid", keyid, "--aad", "ctx", input=ciphertext).stdout == "text from stdin"
    wrong = cli.run("decrypt", "--keyid", keyid, "--aad", "other", input=ciphertext)
    assert wrong.exit_code == errors.EXIT_CRYPTO
    assert wrong.stderr.strip() == "error: Decryption failed, Please confirm that your parameters are correct."

    blob = bytes(range(256)) * 4
    raw = cli.ok("encrypt", "--keyid", keyid, "--binary", input=blob).stdout_bytes
    assert cli.ok("decrypt", "--keyid", keyid, "--binary", input=raw).stdout_bytes == blob
    source, sealed, back = tmp_path / "in.bin", tmp_path / "ct.txt", tmp_path / "out.bin"
    source.write_bytes(blob)
    cli.ok("encrypt", "--keyid", keyid, "--in", str(source), "--out", str(sealed))
    cli.ok("decrypt", "--keyid", keyid, "--in", str(sealed), "--out", str(back))
    assert back.read_bytes() == blob
    as_json = cli.json("encrypt", "--keyid", keyid, "--text", "j")
    assert base64.b64decode(cli.json("decrypt", "--keyid", keyid, input=as_json["ciphertext"])["plaintext"]) == b"j"
    not_b64 = cli.run("decrypt", "--keyid", keyid, input="not base64!")
    assert not_b64.exit_code == errors.EXIT_USAGE
    too_big = cli.run("encrypt", "--keyid", keyid, input=b"x" * 7000)
    assert too_big.exit_code == errors.EXIT_BAD_REQUEST and "plaintext length error" in too_big.stderr


def test_asymmetric_encryption(cli: Cli, enrolled: Enrolled) -> None:
    keyid = cli.ok("key", "create", "--keyspec", "EH_RSA_2048", "--keyusage", "EH_KEYUSAGE_ENCRYPT_DECRYPT").stdout
    keyid = keyid.strip()
    for mode in ("oaep", "pkcs1"):
        sealed = cli.ok("asym-encrypt", "--keyid", keyid, "--padding-mode", mode, "--text", "rsa").stdout
        assert cli.ok("asym-decrypt", "--keyid", keyid, "--padding-mode", mode, input=sealed).stdout == "rsa"
    bad = cli.run("asym-encrypt", "--keyid", keyid, "--padding-mode", "nonsense", "--text", "x")
    assert bad.exit_code == errors.EXIT_USAGE and "EH_RSA_PKCS1_OAEP" in bad.output


def test_sign_and_verify(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    ec_key = cli.ok("key", "create", "--keyspec", "p256").stdout.strip()
    signature = cli.ok("sign", "--keyid", ec_key, "--text", "message").stdout.strip()
    good = cli.ok("verify", "--keyid", ec_key, "--signature", signature, "--text", "message")
    assert good.stdout.strip() == "valid"
    bad = cli.run("verify", "--keyid", ec_key, "--signature", signature, "--text", "massage")
    assert bad.exit_code == errors.EXIT_CRYPTO and "verification failed" in bad.stderr
    assert cli.run("verify", "--keyid", ec_key, "--signature", signature, "--text", "m", "--json").stdout == (
        '{"result": false}\n'
    )

    rsa_key = cli.ok("key", "create", "--keyspec", "EH_RSA_2048", "--keyusage", "sign").stdout.strip()
    digest = hashlib.sha384(b"big document").digest()
    sig_file = tmp_path / "sig.bin"
    doc = tmp_path / "digest.bin"
    doc.write_bytes(digest)
    flags = ("--digest-mode", "sha384", "--padding-mode", "pkcs1", "--message-type", "digest", "--in", str(doc))
    sig_file.write_bytes(cli.ok("sign", "--keyid", rsa_key, *flags, "--binary").stdout_bytes)
    assert len(sig_file.read_bytes()) == 256
    assert cli.ok("verify", "--keyid", rsa_key, *flags, "--signature-file", str(sig_file)).exit_code == 0
    assert cli.run("verify", "--keyid", rsa_key, *flags).exit_code == errors.EXIT_USAGE


def test_data_keys_random_and_macs(cli: Cli, enrolled: Enrolled) -> None:
    keyid = cli.ok("key", "create").stdout.strip()
    made = cli.json("datakey", "generate", "--keyid", keyid, "--keylen", "16", "--aad", "db")
    assert len(base64.b64decode(made["plaintext"])) == 16
    opened = cli.json("decrypt", "--keyid", keyid, "--aad", "db", input=made["ciphertext"])
    assert opened["plaintext"] == made["plaintext"]
    human = cli.ok("datakey", "generate", "--keyid", keyid).stdout.splitlines()
    assert human[0].startswith("plaintext: ") and human[1].startswith("ciphertext: ")
    blind = cli.ok("datakey", "generate", "--keyid", keyid, "--no-plaintext").stdout.strip()
    assert len(base64.b64decode(cli.json("decrypt", "--keyid", keyid, input=blind)["plaintext"])) == 32

    target = cli.ok("key", "create", "--keyspec", "rsa2048").stdout.strip()
    exported = cli.ok(
        "datakey", "export", "--keyid", keyid, "--ukeyid", target, "--ciphertext", made["ciphertext"], "--aad", "db"
    ).stdout
    assert cli.json("asym-decrypt", "--keyid", target, input=exported)["plaintext"] == made["plaintext"]

    assert len(bytes.fromhex(cli.ok("random", "--length", "16", "--format", "hex").stdout.strip())) == 16
    assert len(cli.ok("random", "--length", "7", "--format", "raw").stdout_bytes) == 7
    assert len(base64.b64decode(cli.json("random")["random"])) == 32
    assert cli.run("random", "--length", "2000").exit_code == errors.EXIT_USAGE

    hmac_key = cli.ok("key", "create", "--keyspec", "hmac").stdout.strip()
    tag = cli.ok("mac", "generate", "--keyid", hmac_key, "--text", "m").stdout.strip()
    assert cli.ok("mac", "verify", "--keyid", hmac_key, "--mac", tag, "--text", "m").stdout.strip() == "valid"
    assert cli.run("mac", "verify", "--keyid", hmac_key, "--mac", tag, "--text", "n").exit_code == errors.EXIT_CRYPTO


def test_secret_commands(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    require_secret_actions()
    cli.ok("secret", "create", "--name", "db", "--description", "primary", input="s3cret\n")
    assert cli.ok("secret", "get", "--name", "db").stdout == "s3cret\n"  # the trailing newline was dropped
    value = tmp_path / "value"
    value.write_text("second\n")
    cli.ok("secret", "put", "--name", "db", "--value-file", str(value), "--keep-newline")
    assert cli.json("secret", "get", "--name", "db")["secretData"] == "second\n"
    assert cli.json("secret", "get", "--name", "db", "--version", "1")["secretData"] == "s3cret"
    assert [v["versionId"] for v in cli.json("secret", "versions", "--name", "db")["versionIds"]] == [1, 2]
    cli.ok("secret", "update-desc", "--name", "db", "--description", "changed")
    assert cli.json("secret", "describe", "--name", "db")["description"] == "changed"
    assert "db" in cli.ok("secret", "list").stdout
    cli.ok("secret", "delete", "--name", "db", "--recovery-days", "3")
    assert cli.json("secret", "list")[0]["plannedDeleteTime"] is not None
    cli.ok("secret", "restore", "--name", "db")
    cli.ok("secret", "delete", "--name", "db", "--force", "--yes")
    gone = cli.run("secret", "describe", "--name", "db")
    assert gone.exit_code == errors.EXIT_NOT_FOUND
    assert cli.run("secret", "create", "--name", "x", input="").exit_code == errors.EXIT_USAGE


# ------------------------------------------------------------------------------------------ errors and extras
def test_exit_codes(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    keyid = cli.ok("key", "create").stdout.strip()
    missing = cli.run("encrypt", "--keyid", "00000000-0000-0000-0000-000000000000", "--text", "x")
    assert missing.exit_code == errors.EXIT_NOT_FOUND == 4
    bad_keyid = cli.run("encrypt", "--keyid", "nope", "--text", "x")
    assert bad_keyid.exit_code == errors.EXIT_BAD_REQUEST
    assert "Parameter invalid, The keyid length error." in bad_keyid.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("x" * 32)
    sign_error = cli.run("key", "list", "--apikey-file", str(wrong))
    assert sign_error.exit_code == errors.EXIT_AUTH and sign_error.stderr.strip() == "error: sign error"
    empty = cli.run("decrypt", "--keyid", keyid, input="")
    assert empty.exit_code == errors.EXIT_BAD_REQUEST and "The ciphertext cannot be empty." in empty.stderr
    cli.config_file.unlink()
    nothing = cli.run("key", "list")
    assert nothing.exit_code == errors.EXIT_USAGE and "no server URL" in nothing.stderr
    no_apikey = cli.run("key", "list", "--url", cli.url, "--appid", enrolled.appid)
    assert no_apikey.exit_code == errors.EXIT_USAGE and "no APIKey" in no_apikey.stderr
    refused = cli.run("version", "--url", f"http://127.0.0.1:{free_port()}")
    assert refused.exit_code == errors.EXIT_CONNECTION and "cannot reach the KMS" in refused.stderr
    assert cli.run("encrypt").exit_code == errors.EXIT_USAGE  # --keyid missing


def test_version_and_legacy_spellings(cli: Cli, enrolled: Enrolled) -> None:
    version = cli.json("version")
    assert version["version"] == "0.3.2" and version["server"].startswith("ehsm-kms")
    assert "wire version 0.3.2" in cli.ok("version").stdout
    assert cli.json("get-version")["version"] == "0.3.2"
    keyid = cli.ok("create-key", "--keyspec", "EH_AES_GCM_128").stdout.strip()
    assert [k["keyid"] for k in cli.json("list-key")] == [keyid]
    blind = cli.json("generate-data-key-without-plaintext", "--keyid", keyid)
    assert set(blind) == {"ciphertext"}
    assert set(cli.json("generate-data-key", "--keyid", keyid)) == {"plaintext", "ciphertext"}
    top = cli.ok("--help").stdout
    assert "list-key" not in top and "encrypt-file" in top and "serve" in top and "admin" in top


def test_shell_completion(cli: Cli) -> None:
    for shell, marker in (("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete --no-files")):
        script = cli.ok("completion", shell).stdout
        assert "_EHSM_KMS_COMPLETE" in script and marker in script, shell
    words = cli.run(
        env={"_EHSM_KMS_COMPLETE": "bash_complete", "COMP_WORDS": "ehsm-kms ke", "COMP_CWORD": "1"},
    )
    assert "plain,key" in words.stdout.splitlines()
    names = cli.run(
        env={
            "_EHSM_KMS_COMPLETE": "bash_complete",
            "COMP_WORDS": "ehsm-kms key create --keyspec EH_RSA_",
            "COMP_CWORD": "4",
        },
    )
    assert {"plain,EH_RSA_2048", "plain,EH_RSA_3072", "plain,EH_RSA_4096"} <= set(names.stdout.splitlines())


def test_json_output_is_one_line(cli: Cli, enrolled: Enrolled) -> None:
    keyid = cli.ok("key", "create").stdout.strip()
    for args in (("key", "list"), ("random",), ("encrypt", "--keyid", keyid, "--text", "x"), ("version",)):
        out = cli.ok(*args, "--json").stdout
        assert out.count("\n") == 1
        json.loads(out)
