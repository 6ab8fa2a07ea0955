"""``ehsm-kms quote ...``, the key-lifecycle commands (``key rotate|versions|describe|schedule-deletion|
cancel-deletion``, ``alias ...``, ``reencrypt``) against the live server of the suite (no TEE, no collateral)."""

from __future__ import annotations

import uuid
from pathlib import Path

from ehsm_kms import errors
from tests.cli.harness import Cli, Enrolled
from tests.vectors import vector_path

MR_ENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MR_SIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"


def test_quote_commands(cli: Cli, enrolled: Enrolled) -> None:
    policy_id = cli.ok("quote", "upload-policy", "--mr-enclave", MR_ENCLAVE, "--mr-signer", MR_SIGNER).stdout.strip()
    assert uuid.UUID(policy_id)
    got = cli.json("quote", "get-policy", "--policy-id", policy_id)
    assert (got["policyId"], got["mr_enclave"], got["mr_signer"]) == (policy_id, MR_ENCLAVE, MR_SIGNER)
    assert MR_SIGNER in cli.ok("quote", "get-policy", "--policy-id", policy_id).stdout
    unknown = cli.run("quote", "get-policy", "--policy-id", str(uuid.uuid4()))
    assert unknown.exit_code == errors.EXIT_NOT_FOUND and "does not exist" in unknown.stderr

    no_tee = cli.run("quote", "generate", "--challenge", "hello")
    assert no_tee.exit_code == errors.EXIT_CRYPTO and "Server exception." in no_tee.stderr
    quote = str(vector_path("sgx-dcap/sgx_quote"))
    no_collateral = cli.run("quote", "verify", "--in", quote, "--nonce", "n")
    assert no_collateral.exit_code == errors.EXIT_CRYPTO and "Server exception." in no_collateral.stderr
    bad_policy = cli.run("quote", "verify", "--in", quote, "--policy-id", str(uuid.uuid4()))
    assert bad_policy.exit_code == errors.EXIT_BAD_REQUEST and "policyId" in bad_policy.stderr
    both = cli.run("quote", "generate", "--challenge", "a", "--challenge-b64", "YQ==")
    assert both.exit_code == errors.EXIT_USAGE


def test_rotate_versions_describe_and_reencrypt(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    keyid = cli.json("key", "create")["keyid"]
    old = cli.ok("encrypt", "--keyid", keyid, "--aad", "ctx", "--text", "hello").stdout
    assert cli.json("key", "rotate", "--keyid", keyid) == {"keyid": keyid, "keyversion": 2}
    versions = cli.json("key", "versions", "--keyid", keyid)
    assert versions["primaryVersion"] == 2 and [v["keyversion"] for v in versions["list"]] == [1, 2]
    assert "VERSION" in cli.ok("key", "versions", "--keyid", keyid).stdout
    described = cli.json("key", "describe", "--keyid", keyid)
    assert described["versions"] == [1, 2] and described["keyState"] == 1 and described["deletionDate"] is None
    assert "primary 2" in cli.ok("key", "describe", "--keyid", keyid).stdout

    again = cli.json("reencrypt", "--keyid", keyid, "--aad", "ctx", input=old)
    assert (again["keyid"], again["keyversion"]) == (keyid, 2)
    new = cli.ok("reencrypt", "--keyid", keyid, "--aad", "ctx", input=old).stdout
    assert cli.ok("decrypt", "--keyid", keyid, "--aad", "ctx", input=new).stdout == "hello"
    other = cli.json("key", "create")["keyid"]
    moved = cli.ok("reencrypt", "--keyid", keyid, "--aad", "ctx", "--to-keyid", other, "--to-aad", "b", input=old)
    assert cli.ok("decrypt", "--keyid", other, "--aad", "b", input=moved.stdout).stdout == "hello"
    wrong = cli.run("reencrypt", "--keyid", keyid, input=old)  # without the aad
    assert wrong.exit_code == errors.EXIT_CRYPTO


def test_alias_commands(cli: Cli, enrolled: Enrolled) -> None:
    first, second = cli.json("key", "create")["keyid"], cli.json("key", "create")["keyid"]
    assert cli.json("alias", "create", "--keyid", first, "--alias", "app-data") == {"alias": "app-data", "keyid": first}
    assert cli.json("alias", "list") == [{"alias": "app-data", "keyid": first}]
    ciphertext = cli.ok("encrypt", "--keyid", "alias/app-data", "--text", "x").stdout
    assert cli.ok("decrypt", "--keyid", first, input=ciphertext).stdout == "x"
    taken = cli.run("alias", "create", "--keyid", second, "--alias", "app-data")
    assert taken.exit_code == errors.EXIT_BAD_REQUEST and "alias already exists" in taken.stderr
    assert "alias/app-data -> " + second in cli.ok("alias", "update", "--keyid", second, "--alias", "app-data").stdout
    assert "app-data" in cli.ok("alias", "list").stdout
    cli.ok("alias", "delete", "--alias", "app-data")
    assert cli.json("alias", "list") == []
    gone = cli.run("alias", "delete", "--alias", "app-data")
    assert gone.exit_code == errors.EXIT_NOT_FOUND and "alias not found" in gone.stderr


def test_scheduled_deletion_commands(cli: Cli, enrolled: Enrolled) -> None:
    keyid = cli.json("key", "create")["keyid"]
    assert cli.run("key", "schedule-deletion", "--keyid", keyid, input="n\n").exit_code == 1  # not confirmed
    assert cli.run("key", "schedule-deletion", "--keyid", keyid, "--days", "3", "--yes").exit_code == errors.EXIT_USAGE
    scheduled = cli.json("key", "schedule-deletion", "--keyid", keyid, "--days", "7", "--yes")
    assert scheduled["keyid"] == keyid and scheduled["keyState"] == 2 and scheduled["deletionDate"]
    refused = cli.run("encrypt", "--keyid", keyid, "--text", "x")
    assert refused.exit_code == errors.EXIT_BAD_REQUEST and "pending deletion" in refused.stderr
    assert "cancelled" in cli.ok("key", "cancel-deletion", "--keyid", keyid).stdout
    assert cli.json("key", "describe", "--keyid", keyid)["deletionDate"] is None
    not_pending = cli.run("key", "cancel-deletion", "--keyid", keyid)
    assert not_pending.exit_code == errors.EXIT_BAD_REQUEST and "not pending deletion" in not_pending.stderr
