"""The secret manager's rows, as frozen values (the schema is ``migrations/0003_secrets``).

A secret's value is stored only as the core sealed it (bound to the app, the secret, its name and the version
number), so the store never sees a plaintext. Names and descriptions are kept exactly as the client sent them;
the backends store them as UTF-8 bytes so that every string, NUL included, comes back unchanged.
Times are integer milliseconds since the Unix epoch, like the wire's ``createTime`` and ``plannedDeleteTime``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SecretRecord:
    """A secret's metadata. ``current_version`` is derived on reads (the number of its current version)."""

    secret_id: str
    appid: str
    name: str
    created_ms: int
    encryption_key_id: str | None = None  # the CMK that seals its values; None: the app's default secret key
    description: str | None = None
    deleted_ms: int | None = None  # when the deletion was scheduled
    planned_delete_ms: int | None = None  # when it falls due
    rotation_interval: str | None = None  # as given ("30d"); stored and reported, never acted on
    next_rotation_ms: int | None = None
    current_version: int = 1

    @property
    def pending_deletion(self) -> bool:
        return self.planned_delete_ms is not None

    def __repr__(self) -> str:
        described = "none" if self.description is None else f"<{len(self.description)} chars>"
        return (
            f"SecretRecord(secret_id={self.secret_id!r}, appid={self.appid!r}, name=<{len(self.name)} chars>, "
            f"description={described}, current_version={self.current_version}, "
            f"planned_delete_ms={self.planned_delete_ms})"
        )


@dataclass(frozen=True, slots=True)
class SecretVersionRecord:
    """One version of a secret's value, sealed by the core."""

    secret_id: str
    version: int
    ciphertext: bytes
    created_ms: int

    def __repr__(self) -> str:
        return (
            f"SecretVersionRecord(secret_id={self.secret_id!r}, version={self.version}, "
            f"ciphertext=<{len(self.ciphertext)} bytes>, created_ms={self.created_ms})"
        )


@dataclass(frozen=True, slots=True)
class SecretVersionInfo:
    """A row of ListSecretVersionIds: a version's number and time, without its value."""

    version: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class PurgedSecret:
    """A secret whose due deletion one caller carried out (each one is reported to exactly one caller)."""

    secret_id: str
    appid: str
    planned_delete_ms: int
