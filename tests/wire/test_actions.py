"""The action table (contract sections 1, 2.1 step 3, 3.4, 6.1, 7; plus our actions)."""

from __future__ import annotations

import dataclasses

import pytest

from ehsm_kms.wire.actions import ACTIONS, CRYPTO_ACTIONS, UNAUTHENTICATED_ACTIONS, ActionFamily, lookup

ORIGINAL = {
    ActionFamily.APP: {"Enroll", "GetVersion"},
    ActionFamily.KEY: {
        "CreateKey",
        "GetPublicKey",
        "GetParametersForImport",
        "ImportKeyMaterial",
        "ListKey",
        "DeleteKey",
        "DeleteAllKey",
        "EnableKey",
        "DisableKey",
    },
    ActionFamily.CRYPTO: {
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "Sign",
        "Verify",
        "AsymmetricEncrypt",
        "AsymmetricDecrypt",
        "ExportDataKey",
    },
    ActionFamily.ATTESTATION: {"GenerateQuote", "VerifyQuote", "UploadQuotePolicy", "GetQuotePolicy"},
    ActionFamily.SECRET: {
        "CreateSecret",
        "UpdateSecretDesc",
        "PutSecretValue",
        "ListSecretVersionIds",
        "ListSecrets",
        "DescribeSecret",
        "DeleteSecret",
        "GetSecretValue",
        "RestoreSecret",
    },
}
OURS = {
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
    "AttestNode",
}
# Section 2.1 step 3, in the contract's order.
THE_13 = [
    "CreateKey",
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "Sign",
    "Verify",
    "AsymmetricEncrypt",
    "AsymmetricDecrypt",
    "ExportDataKey",
    "GetPublicKey",
    "ImportKeyMaterial",
    "GetParametersForImport",
]


def test_every_action_and_its_family() -> None:
    expected = {name: fam for fam, names in ORIGINAL.items() for name in names}
    expected |= dict.fromkeys(OURS, ActionFamily.BEYOND)
    assert {name: info.family for name, info in ACTIONS.items()} == expected
    assert len(ACTIONS) == 33 + 23
    assert all(info.name == name for name, info in ACTIONS.items())


def test_the_13_cryptographic_actions() -> None:
    assert len(THE_13) == 13
    assert frozenset(THE_13) == CRYPTO_ACTIONS
    assert {n for n, i in ACTIONS.items() if i.crypto} == set(THE_13)


def test_only_enroll_get_version_and_attest_node_are_get_and_unauthenticated() -> None:
    # AttestNode (ours) is asked before enrollment, when the client has no appid to sign with.
    assert {n for n, i in ACTIONS.items() if i.method == "GET"} == {"Enroll", "GetVersion", "AttestNode"}
    assert {"Enroll", "GetVersion", "AttestNode"} == UNAUTHENTICATED_ACTIONS
    assert {i.method for i in ACTIONS.values()} == {"GET", "POST"}


def test_ours() -> None:
    assert {n for n, i in ACTIONS.items() if i.ours} == OURS
    assert not any(ACTIONS[n].crypto for n in OURS)
    assert all(ACTIONS[n].auth and ACTIONS[n].method == "POST" for n in OURS - {"AttestNode"})


@pytest.mark.parametrize(
    "name",
    ["encrypt", "ENCRYPT", "DeleteALLKey", "GenHmac", "GenTokenHmac", "Encrypt ", "", "RA_GET_API_KEY", None],
)
def test_unknown_names(name: str | None) -> None:
    assert lookup(name) is None


def test_lookup_and_immutability() -> None:
    info = lookup("Encrypt")
    assert info is ACTIONS["Encrypt"]
    assert info is not None and info.crypto and info.auth and info.method == "POST"
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.crypto = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        ACTIONS["X"] = info  # type: ignore[index]
