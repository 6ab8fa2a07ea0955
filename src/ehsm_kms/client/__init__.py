"""The ehsm-kms SDK: ``Client`` and ``AsyncClient`` for every action, typed results, one exception per error family.

Envelope encryption of data of any size is in :mod:`ehsm_kms.client.envelope` (imported on its own: it loads the
client-side AES-GCM primitive, which plain KMS calls do not need). See docs/sdk.md.
"""

from __future__ import annotations

from ehsm_kms.client._base import APIKEY_ENV, APPID_ENV, CA_BUNDLE_ENV, URL_ENV
from ehsm_kms.client._calls import SAFE_ACTIONS
from ehsm_kms.client.aio import AsyncClient
from ehsm_kms.client.errors import (
    ConnectionFailed,
    CredentialsMissing,
    EnvelopeError,
    QuotePolicyNotFound,
    ResponseError,
    SecretDeleted,
    SecretExists,
    SecretNotFound,
    VerificationFailed,
)
from ehsm_kms.client.results import (
    Alias,
    DataKey,
    Enrollment,
    ImportParameters,
    KeyDeletion,
    KeyDescription,
    KeyInfo,
    KeyVersion,
    KeyVersions,
    Quote,
    QuotePolicy,
    QuoteVerification,
    ReEncrypted,
    SecretDescription,
    SecretSummary,
    SecretValue,
    SecretVersion,
    SecretVersions,
    Version,
)
from ehsm_kms.client.sync import Client
from ehsm_kms.errors import (
    AuthError,
    BadRequest,
    CryptoError,
    DecryptionFailed,
    EhsmError,
    KeyDisabled,
    KeyExpired,
    KeyNotFound,
    PayloadError,
    ReplayError,
    SignError,
)

__all__ = [
    "APIKEY_ENV",
    "APPID_ENV",
    "CA_BUNDLE_ENV",
    "SAFE_ACTIONS",
    "URL_ENV",
    "Alias",
    "AsyncClient",
    "AuthError",
    "BadRequest",
    "Client",
    "ConnectionFailed",
    "CredentialsMissing",
    "CryptoError",
    "DataKey",
    "DecryptionFailed",
    "EhsmError",
    "Enrollment",
    "EnvelopeError",
    "ImportParameters",
    "KeyDeletion",
    "KeyDescription",
    "KeyDisabled",
    "KeyExpired",
    "KeyInfo",
    "KeyNotFound",
    "KeyVersion",
    "KeyVersions",
    "PayloadError",
    "Quote",
    "QuotePolicy",
    "QuotePolicyNotFound",
    "QuoteVerification",
    "ReEncrypted",
    "ReplayError",
    "ResponseError",
    "SecretDeleted",
    "SecretDescription",
    "SecretExists",
    "SecretNotFound",
    "SecretSummary",
    "SecretValue",
    "SecretVersion",
    "SecretVersions",
    "SignError",
    "VerificationFailed",
    "Version",
]
