"""The SDK has a method for every action of the server's table, in both flavours (sync and async)."""

from __future__ import annotations

import inspect

from ehsm_kms.client import AdminClient, AsyncAdminClient, AsyncClient, Client
from ehsm_kms.wire.actions import ACTIONS

# action -> the method that sends it (Admin* on the admin clients, everything else on the app clients)
METHODS = {
    "Enroll": "enroll",
    "GetVersion": "get_version",
    "AttestNode": "attest_node",
    "CreateKey": "create_key",
    "GetPublicKey": "get_public_key",
    "GetParametersForImport": "get_parameters_for_import",
    "ImportKeyMaterial": "import_key_material",
    "Encrypt": "encrypt",
    "Decrypt": "decrypt",
    "GenerateDataKey": "generate_data_key",
    "GenerateDataKeyWithoutPlaintext": "generate_data_key_without_plaintext",
    "Sign": "sign",
    "Verify": "verify",
    "AsymmetricEncrypt": "asymmetric_encrypt",
    "AsymmetricDecrypt": "asymmetric_decrypt",
    "ExportDataKey": "export_data_key",
    "ListKey": "list_keys",
    "DeleteKey": "delete_key",
    "DeleteAllKey": "delete_all_keys",
    "EnableKey": "enable_key",
    "DisableKey": "disable_key",
    "GenerateQuote": "generate_quote",
    "VerifyQuote": "verify_quote",
    "UploadQuotePolicy": "upload_quote_policy",
    "GetQuotePolicy": "get_quote_policy",
    "CreateSecret": "create_secret",
    "UpdateSecretDesc": "update_secret_description",
    "PutSecretValue": "put_secret_value",
    "ListSecretVersionIds": "list_secret_version_ids",
    "ListSecrets": "list_secrets",
    "DescribeSecret": "describe_secret",
    "DeleteSecret": "delete_secret",
    "GetSecretValue": "get_secret_value",
    "RestoreSecret": "restore_secret",
    "RotateKey": "rotate_key",
    "ListKeyVersions": "list_key_versions",
    "ReEncrypt": "re_encrypt",
    "GenerateMac": "generate_mac",
    "VerifyMac": "verify_mac",
    "CreateAlias": "create_alias",
    "UpdateAlias": "update_alias",
    "DeleteAlias": "delete_alias",
    "ListAliases": "list_aliases",
    "DescribeKey": "describe_key",
    "ScheduleKeyDeletion": "schedule_key_deletion",
    "CancelKeyDeletion": "cancel_key_deletion",
    "GenerateRandom": "generate_random",
    "SetMinDecryptVersion": "set_min_decrypt_version",
    "UpdateKeyRotation": "update_key_rotation",
    "UpdateKeyDescription": "update_key_description",
    "AdminListApps": "list_apps",
    "AdminShowApp": "show_app",
    "AdminRotateApiKey": "rotate_apikey",
    "AdminRevokeApp": "revoke_app",
    "AdminRestoreApp": "restore_app",
    "AdminIssueEnrollToken": "issue_enroll_token",
}


def test_every_action_has_a_method_in_both_flavours() -> None:
    assert set(METHODS) == set(ACTIONS)
    for action, method in METHODS.items():
        sync, aio = (AdminClient, AsyncAdminClient) if action.startswith("Admin") else (Client, AsyncClient)
        assert callable(getattr(sync, method, None)), (action, sync.__name__, method)
        assert inspect.iscoroutinefunction(getattr(aio, method, None)), (action, aio.__name__, method)
        assert not inspect.iscoroutinefunction(getattr(sync, method))
        # Same parameters, sync and async.
        assert (
            inspect.signature(getattr(sync, method)).parameters.keys()
            == inspect.signature(getattr(aio, method)).parameters.keys()
        ), (action, method)
