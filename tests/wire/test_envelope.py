"""The response envelope and the per-action success messages (contract sections 1, 3.4, 6.1, 7)."""

from __future__ import annotations

import pytest

from ehsm_kms import errors
from ehsm_kms.wire import envelope
from ehsm_kms.wire.actions import ACTIONS

# Section 3.4 / 2.7 / 6.1 / 7, literally.
MESSAGES = {
    "CreateKey": "success!",
    "Encrypt": "success!",
    "Decrypt": "success!",
    "AsymmetricEncrypt": "success!",
    "AsymmetricDecrypt": "success!",
    "Sign": "success!",
    "Verify": "success!",
    "GenerateDataKey": "success!",
    "GenerateDataKeyWithoutPlaintext": "success!",
    "ExportDataKey": "success!",
    "GetPublicKey": "success!",
    "GetParametersForImport": "success!",
    "ImportKeyMaterial": "success!",
    "GetVersion": "success!",
    "Enroll": "successful",
    "ListKey": "successful",
    "DeleteKey": "successful",
    "DeleteAllKey": "successful",
    "EnableKey": "successful",
    "DisableKey": "successful",
    "GenerateQuote": "success!",
    "VerifyQuote": "success!",
    "UploadQuotePolicy": "Upload quote policy success.",
    "GetQuotePolicy": "Query quote policy success.",
    "CreateSecret": "The db-password create success.",
    "UpdateSecretDesc": "Update secret description success.",
    "PutSecretValue": "The db-password new version put success.",
    "ListSecretVersionIds": "List secret versionIds success.",
    "ListSecrets": "List secrets success.",
    "DescribeSecret": "Describe secrets success.",
    "DeleteSecret": "The db-password delete success",
    "GetSecretValue": "successful",
    "RestoreSecret": "The db-password restore success.",
}


@pytest.mark.parametrize(("action", "text"), MESSAGES.items())
def test_success_messages_of_the_original(action: str, text: str) -> None:
    assert envelope.success_message(action, secretName="db-password") == text


def test_every_action_has_a_success_message() -> None:
    assert set(envelope.SUCCESS_MESSAGES) == set(ACTIONS)
    for action in ACTIONS:
        assert envelope.success_message(action, secretName="s")
    assert set(envelope.SORTED_RESULTS) <= set(ACTIONS)


def test_scheduled_secret_deletion_message() -> None:
    text = envelope.DELETE_SCHEDULED.format(secretName="db-password", days=30)
    assert text == "The db-password will be deleted after 30 days."


def test_secret_names_are_not_format_strings() -> None:
    assert envelope.success_message("CreateSecret", secretName="{0}{x}") == "The {0}{x} create success."


def test_success_envelope() -> None:
    assert envelope.success({"keyid": "k"}) == {"code": 200, "message": "success!", "result": {"keyid": "k"}}
    assert envelope.success({}, "successful") == {"code": 200, "message": "successful", "result": {}}
    sorted_body = envelope.success({"plaintext": "p", "ciphertext": "c"}, sort_keys=True)
    assert list(sorted_body["result"]) == ["ciphertext", "plaintext"]
    kept = envelope.success({"pubkey": "P", "keyid": "k"})
    assert list(kept["result"]) == ["pubkey", "keyid"]


def test_success_for_uses_the_table() -> None:
    gdk = envelope.success_for("GenerateDataKey", {"plaintext": "p", "ciphertext": "c"})
    assert envelope.dumps(gdk) == b'{"code":200,"message":"success!","result":{"ciphertext":"c","plaintext":"p"}}'
    gpk = envelope.success_for("GetPublicKey", {"pubkey": "P", "keyid": "k"})
    assert envelope.dumps(gpk) == b'{"code":200,"message":"success!","result":{"pubkey":"P","keyid":"k"}}'
    enroll = envelope.success_for("Enroll", {"appid": "a", "apikey": "k"})
    assert envelope.dumps(enroll) == b'{"code":200,"message":"successful","result":{"apikey":"k","appid":"a"}}'
    version = envelope.success_for("GetVersion", {"version": "0.3.2", "git_sha": "abcdef0"})
    assert list(version["result"]) == ["git_sha", "version"]
    vq = envelope.success_for(
        "VerifyQuote", {"nonce": "n", "result": 0, "mr_enclave": "e", "mr_signer": "s", "sign": "x"}
    )
    assert list(vq["result"]) == ["nonce", "result", "mr_enclave", "mr_signer", "sign"]
    secret = envelope.success_for("CreateSecret", {}, secretName="s1")
    assert secret == {"code": 200, "message": "The s1 create success.", "result": {}}


def test_success_does_not_alias_the_result() -> None:
    result = {"b": 1, "a": 2}
    body = envelope.success(result)
    body["result"]["c"] = 3
    assert result == {"b": 1, "a": 2}


@pytest.mark.parametrize(
    ("exc", "body"),
    [
        (
            errors.PayloadError("Parameter invalid, The keyspec type is incorrect."),
            {"code": 400, "message": "Parameter invalid, The keyspec type is incorrect.", "result": {}},
        ),
        (errors.InvalidJson(), {"code": 400, "message": "Invalid JSON", "result": {}}),
        (errors.BadRequest(), {"code": 400, "message": "Missing required parameters", "result": {}}),
        (errors.SignError(), {"code": 400, "message": "sign error", "result": {}}),
        (errors.ApiNotFound(), {"code": 404, "message": "API Not Found", "result": {}}),
        (errors.CryptoError(), {"code": 500, "message": "Server exception.", "result": None}),
        (
            errors.DecryptionFailed(),
            {
                "code": 400,
                "message": "Decryption failed, Please confirm that your parameters are correct.",
                "result": None,
            },
        ),
        (
            errors.InternalError(),
            {
                "code": 500,
                "message": "Server internal error, please contact the administrator.",
                "result": {},
            },
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, errors.EhsmError) else "",
)
def test_error_envelope(exc: errors.EhsmError, body: dict[str, object]) -> None:
    assert envelope.error(exc) == body


def test_dumps_is_compact_utf8_like_json_stringify() -> None:
    assert envelope.dumps(envelope.error(errors.CryptoError())) == (
        b'{"code":500,"message":"Server exception.","result":null}'
    )
    assert envelope.dumps({"k": "é/+\U0001f600"}) == '{"k":"é/+\U0001f600"}'.encode()
    assert envelope.dumps({"s": 'a"b\\c\n\x00'}) == b'{"s":"a\\"b\\\\c\\n\\u0000"}'
    assert envelope.dumps({"t": True, "n": None, "i": 16, "l": [1, "x"]}) == (b'{"t":true,"n":null,"i":16,"l":[1,"x"]}')
