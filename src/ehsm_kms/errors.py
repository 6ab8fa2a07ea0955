"""One error tree for the whole project.

Every error knows the wire ``code`` and ``message`` it answers with (the eHSM-KMS envelope), whether the original
service put ``"result": null`` (errors that came from its enclave) or ``"result": {}`` (errors from its Node layer),
and the exit code the CLI uses for it. Nothing else in the project invents wire codes or messages for errors:
raise one of these, and the server's one mapper turns it into a response.

Error messages never contain secrets, plaintexts, keys or request bodies.
"""

from __future__ import annotations

from typing import Any, ClassVar

# CLI exit codes, one per error family.
EXIT_OK = 0
EXIT_GENERIC = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_BAD_REQUEST = 5
EXIT_CRYPTO = 6
EXIT_SERVER = 7
EXIT_CONNECTION = 8


class EhsmError(Exception):
    """Base of every error the project raises on purpose."""

    code: ClassVar[int] = 500
    default_message: ClassVar[str | None] = "Server internal error, please contact the administrator."
    result_null: ClassVar[bool] = False
    exit_code: ClassVar[int] = EXIT_SERVER

    def __init__(self, message: str | None = None, *, result: dict[str, Any] | None = None) -> None:
        self.message: str | None = message if message is not None else self.default_message
        self.result: dict[str, Any] | None = result
        super().__init__(self.message or self.__class__.__name__)

    def envelope(self) -> dict[str, Any]:
        """The wire body of this error (HTTP status is always 200)."""
        body: dict[str, Any] = {"code": self.code}
        if self.message is not None:
            body["message"] = self.message
        if self.result_null:
            body["result"] = None
        else:
            body["result"] = self.result if self.result is not None else {}
        return body


# ---------------------------------------------------------------- request shape and authentication (400, result {})
class BadRequest(EhsmError):
    code = 400
    default_message = "Missing required parameters"
    exit_code = EXIT_BAD_REQUEST


class InvalidJson(BadRequest):
    default_message = "Invalid JSON"


class BodyTooLarge(BadRequest):
    """The body is over the limit (100 kB, as the original's JSON parser); the original answered with an HTML 413."""

    default_message = "request entity too large"


class ParamTypeError(BadRequest):
    default_message = "param type error"


class NonceLengthError(BadRequest):
    default_message = "Nonce length error"


class TimestampLengthError(BadRequest):
    default_message = "Timestamp length error"


class TimestampError(BadRequest):
    default_message = "Timestamp error"


class ReplayError(BadRequest):
    default_message = "Timestamp can't be repeated in 20 minutes"
    exit_code = EXIT_AUTH


class PayloadError(BadRequest):
    """A payload field broke a rule of the contract's section 3.1; the message names the field."""


class AuthError(BadRequest):
    exit_code = EXIT_AUTH


class UnknownApp(AuthError):
    # The original sends no message for an unknown appid; the contract allows us to add one (codes stay).
    default_message = "appid not found"


class SignError(AuthError):
    default_message = "sign error"


class ApiKeyUnavailable(AuthError):
    """The app's APIKey blob could not be opened (damaged, or moved from another app's row)."""

    default_message = "Unexpected Error"


class AppRevoked(AuthError):
    default_message = "app revoked"


class EnrollRefused(AuthError):
    default_message = "enroll refused"


# ---------------------------------------------------------------- key lookup (400, result {})
class KeyNotFound(BadRequest):
    """Unknown key, deleted key, and a key of another app all answer exactly the same (no existence oracle)."""

    default_message = "keyid error"
    exit_code = EXIT_NOT_FOUND


class KeyDisabled(BadRequest):
    default_message = "keyid is disabled"


class KeyExpired(BadRequest):
    default_message = "keyid expire"


# ---------------------------------------------------------------- errors the original's enclave produced (result null)
class CryptoError(EhsmError):
    """Wrong key type, usage, origin, padding or digest; any failure inside the core that is not a decryption."""

    code = 500
    default_message = "Server exception."
    result_null = True
    exit_code = EXIT_CRYPTO


class DecryptionFailed(EhsmError):
    """Every failed symmetric decryption, whatever the cause: one error, one message (no oracle)."""

    code = 400
    default_message = "Decryption failed, Please confirm that your parameters are correct."
    result_null = True
    exit_code = EXIT_CRYPTO


class DataKeyFailed(EhsmError):
    code = 400
    default_message = "Failed, Please confirm that your parameters are correct."
    result_null = True
    exit_code = EXIT_CRYPTO


class ImportFailed(EhsmError):
    code = 500
    default_message = "Import key failed."
    result_null = True
    exit_code = EXIT_CRYPTO


class ImportTokenError(EhsmError):
    code = 500
    default_message = "ImportToken failed."
    exit_code = EXIT_CRYPTO


class ImportTokenExpired(ImportTokenError):
    default_message = 'Token validity time is 24 hours. Try to send "GetParametersForImport" request again.'


class ImportKeyMaterialFailed(EhsmError):
    """A missing or garbled import token, or another failure of ImportKeyMaterial outside the core."""

    code = 500
    default_message = "ImportKeyMaterial failed."
    exit_code = EXIT_CRYPTO


class KeyStateError(BadRequest):
    """EnableKey / DisableKey of a key this app does not have."""

    default_message = "not find this keyid"
    exit_code = EXIT_NOT_FOUND


# ---------------------------------------------------------------- routing
class ApiNotFound(EhsmError):
    code = 404
    default_message = "API Not Found"
    exit_code = EXIT_NOT_FOUND


# ---------------------------------------------------------------- server side
class InternalError(EhsmError):
    """Something failed in the server itself; the only error that may mean a bug."""


class CoreUnavailable(InternalError):
    """The isolated core died or is restarting; the request got no answer, never a wrong one."""

    default_message = "Server exception."
    result_null = True


class StoreUnavailable(InternalError):
    default_message = "database error"


class CoreStartError(EhsmError):
    """The core refused to start (wrong PIN or passphrase, damaged sealed file, failed self-test)."""

    exit_code = EXIT_SERVER


class ConfigError(EhsmError):
    exit_code = EXIT_USAGE


# ---------------------------------------------------------------- ours: versions, aliases, deletion, audit, admin
class KeyPendingDeletion(BadRequest):
    """The key is scheduled for deletion; it cannot be used until CancelKeyDeletion."""

    default_message = "keyid is pending deletion"


class KeyNotPendingDeletion(BadRequest):
    default_message = "keyid is not pending deletion"


class KeyVersionRetired(BadRequest):
    """The ciphertext (or signature) names a key version below the key's minDecryptVersion.

    Not a decryption failure: the version is read from the ciphertext's header, which is not secret, so saying so
    is no oracle; it tells the caller to ReEncrypt earlier or to lower minDecryptVersion.
    """

    default_message = "key version retired: the key version is below the key's minDecryptVersion"


class KeyVersionInvalid(BadRequest):
    default_message = "keyversion error"


class KeyRotationRefused(BadRequest):
    """An external (BYOK) key: its new material would have to be imported, so it is not rotated."""

    default_message = "an external key cannot be rotated"


class KeyRotationConflict(InternalError):
    """Another node rotated the key at the same moment, every attempt; the caller may simply try again."""

    default_message = "the key was rotated concurrently; try again"


class AliasExists(BadRequest):
    default_message = "alias already exists"


class AliasNotFound(BadRequest):
    exit_code = EXIT_NOT_FOUND
    default_message = "alias not found"


class KeyHasAlias(BadRequest):
    default_message = "the key already has an alias"


class AdminAuthError(AuthError):
    """An admin action without a valid admin credential (an app's own credential never is one)."""

    default_message = "admin sign error"


class AppNotFound(BadRequest):
    """An admin action names no app (UnknownApp is for a request's own appid)."""

    exit_code = EXIT_NOT_FOUND
    default_message = "app not found"


class AuditUnavailable(InternalError):
    """audit_fail_closed is set and the audit record of the request could not be written."""

    default_message = "audit log unavailable"
