"""The response envelope ``{"code", "message", "result"}`` and the success message of every action.

The HTTP status is always 200; success or failure is only in ``code`` (contract section 1). Success messages
differ by action and existing clients may show or match them, so they live here, in one table, instead of in
each handler: ``"success!"`` for results built by the original's enclave, ``"successful"`` for its Node key
management actions, and sentences for the secret manager and quote policies (sections 3.4, 6.1 and 7). Secret
messages name the secret; they are templates filled by :func:`success_message`.

The original's enclave built its results in a ``std::map``, so their keys are in alphabetical order
(``{"ciphertext":…,"plaintext":…}``); the actions in :data:`SORTED_RESULTS` get their result keys sorted.
Results assembled by the original's Node layer keep the order the handler builds (e.g. GetPublicKey's
``{"pubkey":…,"keyid":…}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from ehsm_kms import errors

SUCCESS = "success!"
SUCCESSFUL = "successful"

_MESSAGES: dict[str, str] = {
    # cryptographic actions (section 3.4)
    "CreateKey": SUCCESS,
    "Encrypt": SUCCESS,
    "Decrypt": SUCCESS,
    "AsymmetricEncrypt": SUCCESS,
    "AsymmetricDecrypt": SUCCESS,
    "Sign": SUCCESS,
    "Verify": SUCCESS,
    "GenerateDataKey": SUCCESS,
    "GenerateDataKeyWithoutPlaintext": SUCCESS,
    "ExportDataKey": SUCCESS,
    "GetPublicKey": SUCCESS,
    "GetParametersForImport": SUCCESS,
    "ImportKeyMaterial": SUCCESS,
    # app and key management
    "GetVersion": SUCCESS,
    "Enroll": SUCCESSFUL,
    "ListKey": SUCCESSFUL,
    "DeleteKey": SUCCESSFUL,
    "DeleteAllKey": SUCCESSFUL,
    "EnableKey": SUCCESSFUL,
    "DisableKey": SUCCESSFUL,
    # remote attestation (section 7)
    "GenerateQuote": SUCCESS,
    "VerifyQuote": SUCCESS,
    "UploadQuotePolicy": "Upload quote policy success.",
    "GetQuotePolicy": "Query quote policy success.",
    # secret manager (section 6.1)
    "CreateSecret": "The {secretName} create success.",
    "UpdateSecretDesc": "Update secret description success.",
    "PutSecretValue": "The {secretName} new version put success.",
    "ListSecretVersionIds": "List secret versionIds success.",
    "ListSecrets": "List secrets success.",
    "DescribeSecret": "Describe secrets success.",
    "DeleteSecret": "The {secretName} delete success",  # sic, no period; this is the forced deletion
    "GetSecretValue": SUCCESSFUL,
    "RestoreSecret": "The {secretName} restore success.",
    # ours: key management like the original's Node actions, cryptography like its enclave's
    "RotateKey": SUCCESSFUL,
    "ListKeyVersions": SUCCESSFUL,
    "CreateAlias": SUCCESSFUL,
    "UpdateAlias": SUCCESSFUL,
    "DeleteAlias": SUCCESSFUL,
    "ListAliases": SUCCESSFUL,
    "DescribeKey": SUCCESSFUL,
    "ScheduleKeyDeletion": SUCCESSFUL,
    "CancelKeyDeletion": SUCCESSFUL,
    "SetMinDecryptVersion": SUCCESSFUL,
    "UpdateKeyRotation": SUCCESSFUL,
    "UpdateKeyDescription": SUCCESSFUL,
    "AdminListApps": SUCCESSFUL,
    "AdminShowApp": SUCCESSFUL,
    "AdminRotateApiKey": SUCCESSFUL,
    "AdminRevokeApp": SUCCESSFUL,
    "AdminRestoreApp": SUCCESSFUL,
    "AdminIssueEnrollToken": SUCCESSFUL,
    "ReEncrypt": SUCCESS,
    "GenerateMac": SUCCESS,
    "VerifyMac": SUCCESS,
    "GenerateRandom": SUCCESS,
    "AttestNode": SUCCESSFUL,
}
SUCCESS_MESSAGES: Mapping[str, str] = MappingProxyType(_MESSAGES)
"""Per action, its success message; ``{secretName}`` is filled in by :func:`success_message`."""

DELETE_SCHEDULED = "The {secretName} will be deleted after {days} days."
"""DeleteSecret without force (the original's one success message without "success")."""

SORTED_RESULTS: frozenset[str] = frozenset(
    {
        "Encrypt",
        "Decrypt",
        "AsymmetricEncrypt",
        "AsymmetricDecrypt",
        "Sign",
        "Verify",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "ExportDataKey",
        "ImportKeyMaterial",
        "GetVersion",
        "Enroll",
        "GenerateQuote",
        "ReEncrypt",
        "GenerateMac",
        "VerifyMac",
        "GenerateRandom",
    }
)
"""Actions whose result the original's enclave built (keys in alphabetical order)."""


def success(result: Mapping[str, Any], message: str = SUCCESS, *, sort_keys: bool = False) -> dict[str, Any]:
    """``{"code":200,"message":message,"result":result}``; ``sort_keys`` for enclave-style results."""
    body = {k: result[k] for k in sorted(result)} if sort_keys else dict(result)
    return {"code": 200, "message": message, "result": body}


def success_message(action: str, **fields: Any) -> str:
    """The success message of ``action``, with ``secretName`` (and the like) filled in."""
    return _MESSAGES.get(action, SUCCESS).format(**fields)


def success_for(action: str, result: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """The success envelope of ``action``: its message from the table, its key order."""
    return success(result, success_message(action, **fields), sort_keys=action in SORTED_RESULTS)


def error(exc: errors.EhsmError) -> dict[str, Any]:
    """The envelope of an error (its code, its message or none, ``result`` ``{}`` or ``null``)."""
    return exc.envelope()


def dumps(obj: Any) -> bytes:
    """Compact JSON in UTF-8, as ``JSON.stringify`` writes it (no spaces, ``/`` and non-ASCII unescaped)."""
    return orjson.dumps(obj)
