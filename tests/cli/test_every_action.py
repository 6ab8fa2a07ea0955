"""The CLI has a command for every action of the server's table."""

from __future__ import annotations

import click

from ehsm_kms.cli.main import main
from ehsm_kms.wire.actions import ACTIONS

COMMANDS = {
    "Enroll": "enroll",
    "GetVersion": "version",
    "AttestNode": "enroll",  # enroll --attest
    "CreateKey": "key create",
    "GetPublicKey": "key public-key",
    "GetParametersForImport": "key import-params",
    "ImportKeyMaterial": "key import",
    "Encrypt": "encrypt",
    "Decrypt": "decrypt",
    "GenerateDataKey": "datakey generate",
    "GenerateDataKeyWithoutPlaintext": "datakey generate",  # --no-plaintext
    "Sign": "sign",
    "Verify": "verify",
    "AsymmetricEncrypt": "asym-encrypt",
    "AsymmetricDecrypt": "asym-decrypt",
    "ExportDataKey": "datakey export",
    "ListKey": "key list",
    "DeleteKey": "key delete",
    "DeleteAllKey": "key delete-all",
    "EnableKey": "key enable",
    "DisableKey": "key disable",
    "GenerateQuote": "quote generate",
    "VerifyQuote": "quote verify",
    "UploadQuotePolicy": "quote upload-policy",
    "GetQuotePolicy": "quote get-policy",
    "CreateSecret": "secret create",
    "UpdateSecretDesc": "secret update-desc",
    "PutSecretValue": "secret put",
    "ListSecretVersionIds": "secret versions",
    "ListSecrets": "secret list",
    "DescribeSecret": "secret describe",
    "DeleteSecret": "secret delete",
    "GetSecretValue": "secret get",
    "RestoreSecret": "secret restore",
    "RotateKey": "key rotate",
    "ListKeyVersions": "key versions",
    "ReEncrypt": "reencrypt",
    "GenerateMac": "mac generate",
    "VerifyMac": "mac verify",
    "CreateAlias": "alias create",
    "UpdateAlias": "alias update",
    "DeleteAlias": "alias delete",
    "ListAliases": "alias list",
    "DescribeKey": "key describe",
    "ScheduleKeyDeletion": "key schedule-deletion",
    "CancelKeyDeletion": "key cancel-deletion",
    "GenerateRandom": "random",
    "SetMinDecryptVersion": "key set-min-decrypt-version",
    "UpdateKeyRotation": "key set-rotation",
    "UpdateKeyDescription": "key set-description",
    "AdminListApps": "remote-admin list-apps",
    "AdminShowApp": "remote-admin show-app",
    "AdminRotateApiKey": "remote-admin rotate-apikey",
    "AdminRevokeApp": "remote-admin revoke-app",
    "AdminRestoreApp": "remote-admin restore-app",
    "AdminIssueEnrollToken": "remote-admin issue-enroll-token",
}


def _resolve(path: str) -> click.Command | None:
    command: click.Command | None = main
    for part in path.split():
        if not isinstance(command, click.Group):
            return None
        command = command.commands.get(part)
    return command


def test_every_action_has_a_command() -> None:
    assert set(COMMANDS) == set(ACTIONS)
    missing = [f"{action}: {path}" for action, path in COMMANDS.items() if _resolve(path) is None]
    assert missing == []
    enroll = _resolve("enroll")
    assert enroll is not None and any("--attest" in p.opts for p in enroll.params)
    generate = _resolve("datakey generate")
    assert generate is not None and any("--no-plaintext" in p.opts for p in generate.params)
