"""The rows the store keeps, as frozen values.

Blobs are opaque here: keyblobs and APIKey blobs are sealed by the core and bound to their owner, so the
store never needs to understand them (DESIGN invariant 1). Enumerations travel as the wire names
(``EH_AES_GCM_256``, ``EH_KEYUSAGE_ENCRYPT_DECRYPT``, ``EH_INTERNAL_KEY``) so a row reads the same as the API
that produced it.
Times are integer milliseconds since the Unix epoch, like the wire's ``creationDate`` and ``expireTime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

APP_ACTIVE: Final = "active"
APP_REVOKED: Final = "revoked"
APP_STATES: Final = frozenset({APP_ACTIVE, APP_REVOKED})

KEY_ENABLED: Final = 1
KEY_DISABLED: Final = 0
KEY_PENDING_DELETION: Final = 2  # read-only: reported while deletion_due_ms is set; the stored state is kept


@dataclass(frozen=True, slots=True)
class AppRecord:
    """An enrolled app: its appid and its APIKey sealed by the core."""

    appid: str
    apikey_blob: bytes
    created_ms: int
    state: str = APP_ACTIVE

    def __repr__(self) -> str:
        return f"AppRecord(appid={self.appid!r}, state={self.state!r}, created_ms={self.created_ms})"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A CMK's metadata; its key material lives in :class:`KeyVersionRecord` rows."""

    keyid: str
    appid: str
    keyspec: str
    usage: str
    origin: str
    state: int
    creation_ms: int
    expire_ms: int
    alias: str = ""
    description: str = ""
    primary_version: int = 1
    min_decrypt_version: int = 1  # older versions no longer decrypt or verify
    rotation_period_ms: int = 0  # automatic rotation; 0 = none
    next_rotation_ms: int = 0
    deletion_due_ms: int = 0  # ScheduleKeyDeletion; 0 = not scheduled


@dataclass(frozen=True, slots=True)
class KeyVersionRecord:
    """One version of a CMK's key material, wrapped by the domain key (empty until a BYOK key is imported)."""

    keyid: str
    version: int
    blob: bytes
    created_ms: int

    def __repr__(self) -> str:
        return (
            f"KeyVersionRecord(keyid={self.keyid!r}, version={self.version}, blob=<{len(self.blob)} bytes>, "
            f"created_ms={self.created_ms})"
        )


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """A pending BYOK import: the wrapping key pair (sealed by the core) for one ImportKeyMaterial."""

    keyid: str
    token_id: str
    wrapping_blob: bytes
    wrapping_spec: str
    expires_ms: int

    def __repr__(self) -> str:
        return (
            f"ImportRecord(keyid={self.keyid!r}, token_id=<hidden>, "
            f"wrapping_blob=<{len(self.wrapping_blob)} bytes>, wrapping_spec={self.wrapping_spec!r}, "
            f"expires_ms={self.expires_ms})"
        )


@dataclass(frozen=True, slots=True)
class ReplayEntry:
    """A verified request's fingerprint; a second request with the same one before ``expires_ms`` is a replay.

    ``digest`` is chosen by the server (a hash over the signed fields); the store only compares it. A digest
    that starts with the request's timestamp (8 bytes, big-endian) keeps the replay index append-like instead
    of touching a random page per record: on SQLite with a few hundred thousand live entries that records
    three to four times as many requests per second. Correctness does not depend on it.
    """

    appid: str
    digest: bytes
    expires_ms: int
