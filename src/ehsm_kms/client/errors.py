"""The SDK's exceptions: the server's error answers mapped back onto :mod:`ehsm_kms.errors`, and the client's own.

A failed call raises the same class the server raised to produce the answer (``KeyNotFound`` for ``keyid error``,
``SignError`` for ``sign error``, ``DecryptionFailed`` ...), chosen from the wire code and message by one table, so a
caller can ``except`` a family and the CLI gets its exit code from the class. Every class derives from
:class:`ehsm_kms.errors.EhsmError`; ``exc.message`` is the server's message (``API Not Found`` gets the action's
name added) and ``exc.result`` its ``result`` object.

Secret-manager answers (contract section 6.1) have no class in the server's tree yet; they get the ones below, which
derive from the server's :class:`~ehsm_kms.errors.BadRequest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehsm_kms import errors
from ehsm_kms.provisioning.attest.errors import NoTee, ProviderUnavailable


# ---------------------------------------------------------------- failures on the client's side
class ConnectionFailed(errors.EhsmError):
    """The KMS could not be reached (refused, reset, timed out, TLS verification failed)."""

    code = 0
    default_message = "cannot reach the KMS"
    exit_code = errors.EXIT_CONNECTION


class ResponseError(errors.EhsmError):
    """The server answered something that is not an eHSM envelope (a proxy page, a non-200 status, bad JSON)."""

    code = 0
    default_message = "the server's answer is not an eHSM-KMS response"
    exit_code = errors.EXIT_SERVER


class CredentialsMissing(errors.ConfigError):
    """No appid or APIKey (or no server URL) was given, and none was found in the environment."""

    default_message = "no credentials: give appid and apikey, or set EHSM_KMS_APPID and EHSM_KMS_APIKEY"


class VerificationFailed(errors.EhsmError):
    """A signature or MAC did not verify (the CLI's ``verify``; the SDK's ``verify`` returns ``False``)."""

    code = 0
    default_message = "verification failed: the signature does not match"
    exit_code = errors.EXIT_CRYPTO


class EnvelopeError(errors.DecryptionFailed):
    """An envelope-encrypted stream that is malformed or fails authentication; the message says where."""

    default_message = "the encrypted stream is damaged or was not made by ehsm-kms"


# ---------------------------------------------------------------- secret manager (contract section 6.1)
class SecretNotFound(errors.BadRequest):
    default_message = "Cannot find secretName"
    exit_code = errors.EXIT_NOT_FOUND


class SecretExists(errors.BadRequest):
    default_message = "Secret name already exists, cannot use the same secret name"


class SecretDeleted(errors.BadRequest):
    """The secret is pending deletion (restore it first)."""

    default_message = "Can not modify a deleted secret."


class QuotePolicyNotFound(errors.BadRequest):
    """GetQuotePolicy of an unknown id (or another app's): the server answers 200 with only the policyId."""

    default_message = "Cannot find the quote policy"
    exit_code = errors.EXIT_NOT_FOUND


# ---------------------------------------------------------------- the table
_EXACT: dict[tuple[int, str], type[errors.EhsmError]] = {
    (400, "Missing required parameters"): errors.BadRequest,
    (400, "Invalid JSON"): errors.InvalidJson,
    (400, "request entity too large"): errors.BodyTooLarge,
    (400, "param type error"): errors.ParamTypeError,
    (400, "Nonce length error"): errors.NonceLengthError,
    (400, "Timestamp length error"): errors.TimestampLengthError,
    (400, "Timestamp error"): errors.TimestampError,
    (400, "Timestamp can't be repeated in 20 minutes"): errors.ReplayError,
    (400, "appid not found"): errors.UnknownApp,
    (400, "sign error"): errors.SignError,
    (400, "Unexpected Error"): errors.ApiKeyUnavailable,
    (400, "app revoked"): errors.AppRevoked,
    (400, "keyid error"): errors.KeyNotFound,
    (400, "appid error"): errors.KeyNotFound,  # the original's answer for another app's key
    (400, "keyid is disabled"): errors.KeyDisabled,
    (400, "keyid expire"): errors.KeyExpired,
    (400, "not find this keyid"): errors.KeyStateError,
    (400, "Decryption failed, Please confirm that your parameters are correct."): errors.DecryptionFailed,
    (400, "Failed, Please confirm that your parameters are correct."): errors.DataKeyFailed,
    (400, "database error"): errors.StoreUnavailable,
    (500, "database error"): errors.StoreUnavailable,
    (500, "Server exception."): errors.CryptoError,
    (500, "Server exception"): errors.CryptoError,
    (500, "Invalid Parameter."): errors.CryptoError,
    (500, "Argument bad."): errors.CryptoError,
    (500, "Import key failed."): errors.ImportFailed,
    (500, "ImportToken failed."): errors.ImportTokenError,
    (500, 'Token validity time is 24 hours. Try to send "GetParametersForImport" request again.'): (
        errors.ImportTokenExpired
    ),
    (500, "ImportKeyMaterial failed."): errors.ImportKeyMaterialFailed,
    (500, "Server internal error, please contact the administrator."): errors.InternalError,
    (400, "Secret name already exists, cannot use the same secret name"): SecretExists,
    (400, "Cannot find secretName"): SecretNotFound,
    (400, "Can not find secretName"): SecretNotFound,
    (400, "Delete error, Can not find the secretName"): SecretNotFound,
    (400, "Can not restore secret, the secretName not find."): SecretNotFound,
    (400, "Can not modify a deleted secret."): SecretDeleted,
    (400, "Can not put value for a deleted secret."): SecretDeleted,
    # ours: key versions, aliases, scheduled deletion, audit, administration (docs/beyond.md)
    (400, "keyid is pending deletion"): errors.KeyPendingDeletion,
    (400, "keyid is not pending deletion"): errors.KeyNotPendingDeletion,
    (400, "key version retired: the key version is below the key's minDecryptVersion"): errors.KeyVersionRetired,
    (400, "keyversion error"): errors.KeyVersionInvalid,
    (400, "minDecryptVersion must not be above the key's primary version"): errors.KeyVersionInvalid,
    (400, "an external key cannot be rotated"): errors.KeyRotationRefused,
    (500, "the key was rotated concurrently; try again"): errors.KeyRotationConflict,
    (400, "alias already exists"): errors.AliasExists,
    (400, "alias not found"): errors.AliasNotFound,
    (400, "the key already has an alias"): errors.KeyHasAlias,
    (400, "admin sign error"): errors.AdminAuthError,
    (400, "app not found"): errors.AppNotFound,
    (500, "audit log unavailable"): errors.AuditUnavailable,
    # AttestNode on a node that cannot attest (docs/attestation.md)
    (500, NoTee.default_message): NoTee,
    (500, ProviderUnavailable.default_message): ProviderUnavailable,
}

_PREFIXES: tuple[tuple[str, type[errors.EhsmError]], ...] = (
    ("This node serves no TLS certificate", ProviderUnavailable),
    ("Missing required parameters, ", errors.PayloadError),
    ("Parameter invalid, ", errors.PayloadError),
    ("Can't find the ", SecretNotFound),  # "Can't find the <name>'s value."
)


def error_class(action: str, code: int, message: str | None) -> type[errors.EhsmError]:
    """The exception class for an error answer ``{code, message}`` to ``action``."""
    if code == 404:
        return errors.ApiNotFound
    if action == "Enroll" and code == 400:
        return errors.EnrollRefused
    if message is None:
        # The original sends no message for an unknown appid; nothing else answers without one.
        return errors.UnknownApp if code == 400 else errors.InternalError
    exact = _EXACT.get((code, message))
    if exact is not None:
        return exact
    for prefix, cls in _PREFIXES:
        if message.startswith(prefix):
            return cls
    return errors.BadRequest if 400 <= code < 500 else errors.InternalError


def from_wire(action: str, body: Mapping[str, Any]) -> errors.EhsmError:
    """The exception for an error envelope; the server's message is kept as it was sent."""
    code = body.get("code")
    message = body.get("message")
    code_int = code if isinstance(code, int) and not isinstance(code, bool) else 500
    text = message if isinstance(message, str) else None
    cls = error_class(action, code_int, text)
    if cls is errors.ApiNotFound:
        text = f"{text or 'API Not Found'}: this server has no action {action}"
    result = body.get("result")
    exc = cls(text, result=result if isinstance(result, dict) else None)
    exc.add_note(f"ehsm-kms: {action} answered code {code_int}")
    return exc
