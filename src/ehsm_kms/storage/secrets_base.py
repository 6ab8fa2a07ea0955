"""The secret manager's part of the Store protocol, and the SQL both backends run for it.

Three rules hold on every backend, enforced by the database rather than by a read-then-write:

* a name is unique per app, secrets pending deletion included (``UNIQUE (appid, name)``);
* versions are numbered 1, 2, 3 ... per secret with exactly one current version, also when several nodes add
  versions at once. A new version is added by a compare-and-swap: "make version n current if version n-1 is the
  current one" is one statement (PostgreSQL) or one transaction of the single writer (SQLite), and the primary
  key ``(secret_id, version)`` and the partial unique index on the current version are the backstop. A caller that
  lost the race gets False, reads the new current version and tries again;
* a secret whose deletion is due is gone: no call shows, restores, changes or reuses it, even before the
  deletion job removed its rows (``now_ms`` decides), and the job's ``DELETE ... RETURNING`` hands each due secret
  to exactly one caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from ehsm_kms.storage.secret_records import PurgedSecret, SecretRecord, SecretVersionInfo, SecretVersionRecord

__all__ = [
    "SECRET_QUERIES",
    "PurgedSecret",
    "SecretQueries",
    "SecretRecord",
    "SecretStore",
    "SecretVersionInfo",
    "SecretVersionRecord",
    "check_new_secret",
    "secret_from_row",
    "secret_row",
    "text_bytes",
]


class SecretStore(Protocol):
    """What the secret manager needs from persistence. Every method commits before it returns."""

    async def create_secret(self, secret: SecretRecord, first: SecretVersionRecord) -> None:
        """Insert the secret with its version 1 (current); RecordExists when the app has a secret of that name.

        A secret of that name whose deletion is due (at ``secret.created_ms``) is removed first: it is gone.
        """

    async def get_secret(self, appid: str, name: str, now_ms: int) -> SecretRecord | None:
        """The app's secret of that name, pending deletion or not; None when there is none (or it is due)."""

    async def list_secrets(self, appid: str, now_ms: int, name: str | None = None) -> list[SecretRecord]:
        """The app's secrets (pending ones included), oldest first, optionally only the one named; no limit."""

    async def update_secret_description(self, appid: str, name: str, description: str | None) -> bool:
        """Replace (None: remove) the description; False when there is no such secret or it is pending deletion."""

    async def put_secret_version(self, version: SecretVersionRecord) -> bool:
        """Make ``version`` the secret's current version if version ``version.version - 1`` is the current one
        and the secret is not pending deletion; False (nothing written) otherwise."""

    async def get_secret_version(self, secret_id: str, version: int | None = None) -> SecretVersionRecord | None:
        """One version of a secret, or its current one (``version`` None)."""

    async def list_secret_versions(self, secret_id: str) -> list[SecretVersionInfo]:
        """Every version of the secret, in order; no limit."""

    async def schedule_secret_deletion(self, appid: str, name: str, deleted_ms: int, planned_delete_ms: int) -> bool:
        """Mark the secret pending deletion (again: the new times replace the old); False when there is none."""

    async def restore_secret(self, appid: str, name: str, now_ms: int) -> bool:
        """Cancel a pending deletion (harmless on a secret that is not pending); False when there is none."""

    async def delete_secret(self, appid: str, name: str, now_ms: int) -> bool:
        """Delete the secret and all its versions now; False when there is none."""

    async def purge_due_secrets(self, now_ms: int, limit: int) -> list[PurgedSecret]:
        """Delete up to ``limit`` secrets whose deletion is due, with their versions, and return them.

        Any number of callers (nodes) may run this at once: each due secret is deleted and returned once.
        """

    async def get_secret_key(self, appid: str) -> bytes | None:
        """The app's default secret key (a keyblob), or None before its first secret."""

    async def put_secret_key(self, appid: str, blob: bytes, created_ms: int) -> bytes:
        """Store the app's default secret key unless it has one; return the one it has now (the first wins)."""


def text_bytes(value: str) -> bytes:
    return value.encode("utf-8")


def _text(value: Any) -> str | None:
    return None if value is None else bytes(value).decode("utf-8")


def secret_row(rec: SecretRecord) -> tuple[object, ...]:
    """The columns of an insert into ``secrets``, in :attr:`SecretQueries.insert_secret` order."""
    return (
        rec.secret_id,
        rec.appid,
        text_bytes(rec.name),
        rec.created_ms,
        rec.encryption_key_id,
        None if rec.description is None else text_bytes(rec.description),
        rec.deleted_ms,
        rec.planned_delete_ms,
        rec.rotation_interval,
        rec.next_rotation_ms,
    )


def secret_from_row(row: Sequence[Any]) -> SecretRecord:
    """A row of :data:`_SELECT_SECRET` (the columns of :func:`secret_row`, then the current version)."""
    return SecretRecord(
        secret_id=row[0],
        appid=row[1],
        name=bytes(row[2]).decode("utf-8"),
        created_ms=row[3],
        encryption_key_id=row[4],
        description=_text(row[5]),
        deleted_ms=row[6],
        planned_delete_ms=row[7],
        rotation_interval=row[8],
        next_rotation_ms=row[9],
        current_version=int(row[10]),
    )


def check_new_secret(secret: SecretRecord, first: SecretVersionRecord) -> None:
    """A new secret starts at version 1, which is its current one, and is not pending deletion."""
    if first.secret_id != secret.secret_id or first.version != 1 or secret.current_version != 1:
        raise ValueError(f"secret {secret.secret_id}: a new secret starts with version 1")
    if secret.planned_delete_ms is not None or secret.deleted_ms is not None:
        raise ValueError(f"secret {secret.secret_id}: a new secret is not pending deletion")


# A secret is visible until its deletion falls due: "planned_delete_ms IS NULL OR planned_delete_ms > now".
_SELECT_SECRET = (
    "SELECT s.secret_id, s.appid, s.name, s.created_ms, s.encryption_key_id, s.description, s.deleted_ms, "
    "s.planned_delete_ms, s.rotation_interval, s.next_rotation_ms, coalesce(c.version, 0) FROM secrets s "
    "LEFT JOIN secret_versions c ON c.secret_id = s.secret_id AND c.is_current "
    "WHERE s.appid = ? AND (s.planned_delete_ms IS NULL OR s.planned_delete_ms > ?)"
)


@dataclass(frozen=True, slots=True)
class SecretQueries:
    """The statements both SQL backends run, written once with ``?`` placeholders (as ``base.Queries``)."""

    insert_secret: str = (
        "INSERT INTO secrets (secret_id, appid, name, created_ms, encryption_key_id, description, deleted_ms, "
        "planned_delete_ms, rotation_interval, next_rotation_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    insert_current_version: str = (
        "INSERT INTO secret_versions (secret_id, version, ciphertext, created_ms, is_current) VALUES (?, ?, ?, ?, TRUE)"
    )
    # A due secret of the same name is gone; removing it lets its name be used again.
    drop_due_named: str = "DELETE FROM secrets WHERE appid = ? AND name = ? AND planned_delete_ms <= ?"
    get_secret: str = _SELECT_SECRET + " AND s.name = ?"
    list_secrets: str = _SELECT_SECRET + " ORDER BY s.created_ms, s.name"
    list_secrets_named: str = _SELECT_SECRET + " AND s.name = ? ORDER BY s.created_ms, s.name"
    update_description: str = (
        "UPDATE secrets SET description = ? WHERE appid = ? AND name = ? AND planned_delete_ms IS NULL"
    )
    # The compare-and-swap of a new version, first half: retire version n-1 if it is the current one of a secret
    # that is not pending deletion. The second half inserts version n as the current one.
    retire_current: str = (
        "UPDATE secret_versions SET is_current = FALSE WHERE secret_id = ? AND version = ? AND is_current "
        "AND EXISTS (SELECT 1 FROM secrets WHERE secret_id = ? AND planned_delete_ms IS NULL)"
    )
    get_version: str = (
        "SELECT secret_id, version, ciphertext, created_ms FROM secret_versions WHERE secret_id = ? AND version = ?"
    )
    get_current: str = (
        "SELECT secret_id, version, ciphertext, created_ms FROM secret_versions WHERE secret_id = ? AND is_current"
    )
    list_versions: str = "SELECT version, created_ms FROM secret_versions WHERE secret_id = ? ORDER BY version"
    schedule_deletion: str = (
        "UPDATE secrets SET deleted_ms = ?, planned_delete_ms = ? WHERE appid = ? AND name = ? "
        "AND (planned_delete_ms IS NULL OR planned_delete_ms > ?)"
    )
    restore: str = (
        "UPDATE secrets SET deleted_ms = NULL, planned_delete_ms = NULL WHERE appid = ? AND name = ? "
        "AND (planned_delete_ms IS NULL OR planned_delete_ms > ?)"
    )
    delete: str = (
        "DELETE FROM secrets WHERE appid = ? AND name = ? AND (planned_delete_ms IS NULL OR planned_delete_ms > ?)"
    )
    get_key: str = "SELECT blob FROM secret_default_keys WHERE appid = ?"
    put_key: str = (
        "INSERT INTO secret_default_keys (appid, blob, created_ms) VALUES (?, ?, ?) ON CONFLICT (appid) DO NOTHING"
    )

    def with_placeholder(self, mark: str) -> SecretQueries:
        """The same statements with another driver's placeholder (no statement contains a literal ``?``)."""
        return SecretQueries(**{f.name: getattr(self, f.name).replace("?", mark) for f in fields(self)})


SECRET_QUERIES = SecretQueries()
