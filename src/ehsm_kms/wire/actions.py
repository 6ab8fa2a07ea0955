"""The action table: every ``?Action=`` name the service answers, and how the request pipeline treats it.

Names are exact and case-sensitive (contract section 1); an unknown name has no entry, and the server
answers it ``404 "API Not Found"`` (after authentication, as the original does). Only ``Enroll`` and
``GetVersion`` (and our ``AttestNode``, which a client asks before it enrolls) are GET actions and need no
authentication. The thirteen *cryptographic* actions of section 2.1
step 3 refuse a request without a (truthy) payload with ``"Missing required parameters"`` before any type
check.

Actions of family ``BEYOND`` are ours: the original does not have them, and no existing client sends them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class ActionFamily(enum.Enum):
    KEY = "key"
    CRYPTO = "crypto"
    APP = "app"
    SECRET = "secret"
    ATTESTATION = "attestation"
    BEYOND = "beyond"


@dataclass(frozen=True, slots=True)
class ActionInfo:
    name: str
    family: ActionFamily
    method: str = "POST"
    crypto: bool = False  # one of the 13 of section 2.1 step 3: no payload is "Missing required parameters"
    auth: bool = True  # signed request required (all but Enroll and GetVersion)

    @property
    def ours(self) -> bool:
        """Added by this project (not in the original's API)."""
        return self.family is ActionFamily.BEYOND


def _table() -> dict[str, ActionInfo]:
    fam = ActionFamily
    rows: list[ActionInfo] = [
        ActionInfo("Enroll", fam.APP, method="GET", auth=False),
        ActionInfo("GetVersion", fam.APP, method="GET", auth=False),
        # Ours: the node's evidence over a client nonce, bound to its TLS key; asked before Enroll (no appid yet).
        ActionInfo("AttestNode", fam.BEYOND, method="GET", auth=False),
    ]
    crypto_key = ("CreateKey", "GetPublicKey", "GetParametersForImport", "ImportKeyMaterial")
    crypto_ops = (
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "Sign",
        "Verify",
        "AsymmetricEncrypt",
        "AsymmetricDecrypt",
        "ExportDataKey",
    )
    rows += [ActionInfo(n, fam.KEY, crypto=True) for n in crypto_key]
    rows += [ActionInfo(n, fam.CRYPTO, crypto=True) for n in crypto_ops]
    rows += [ActionInfo(n, fam.KEY) for n in ("ListKey", "DeleteKey", "DeleteAllKey", "EnableKey", "DisableKey")]
    rows += [
        ActionInfo(n, fam.ATTESTATION) for n in ("GenerateQuote", "VerifyQuote", "UploadQuotePolicy", "GetQuotePolicy")
    ]
    rows += [
        ActionInfo(n, fam.SECRET)
        for n in (
            "CreateSecret",
            "UpdateSecretDesc",
            "PutSecretValue",
            "ListSecretVersionIds",
            "ListSecrets",
            "DescribeSecret",
            "DeleteSecret",
            "GetSecretValue",
            "RestoreSecret",
        )
    ]
    rows += [
        ActionInfo(n, fam.BEYOND)
        for n in (
            "RotateKey",
            "ListKeyVersions",
            "ReEncrypt",
            "GenerateMac",
            "VerifyMac",
            "CreateAlias",
            "UpdateAlias",
            "DeleteAlias",
            "ListAliases",
            "DescribeKey",
            "ScheduleKeyDeletion",
            "CancelKeyDeletion",
            "GenerateRandom",
            "SetMinDecryptVersion",
            "UpdateKeyRotation",
            "UpdateKeyDescription",
            "AdminListApps",
            "AdminShowApp",
            "AdminRotateApiKey",
            "AdminRevokeApp",
            "AdminRestoreApp",
            "AdminIssueEnrollToken",
        )
    ]
    return {row.name: row for row in rows}


ACTIONS: Mapping[str, ActionInfo] = MappingProxyType(_table())
ATTEST_NODE_PURPOSE = "ehsm-kms AttestNode"
"""The purpose of AttestNode's report data (``bind_report_data(nonce, tls_spki, purpose=...)``), shared by the
node that makes the evidence and the SDK that checks it."""
CRYPTO_ACTIONS: frozenset[str] = frozenset(name for name, info in ACTIONS.items() if info.crypto)
UNAUTHENTICATED_ACTIONS: frozenset[str] = frozenset(name for name, info in ACTIONS.items() if not info.auth)


def lookup(name: str | None) -> ActionInfo | None:
    """The action called ``name`` exactly, or None (the server answers 404 "API Not Found")."""
    if name is None:
        return None
    return ACTIONS.get(name)
