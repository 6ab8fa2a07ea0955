"""What the store keeps for key versions and rotation, aliases, scheduled deletion, the audit log and the admin
credential: the protocol both backends implement (part of :class:`ehsm_kms.storage.base.Store`) and their SQL.

Every multi-node job claims its work with one atomic statement or transaction, never a read followed by a blind
write: a rotation inserts the new version and moves the primary in one transaction that only succeeds if the
primary (and, for automatic rotation, the due time) is still what the node read; a due deletion is one ``DELETE
... RETURNING``. So each item is done once however many nodes run the job, and a crash in the middle leaves the
key as it was (still due, for the next run of any node).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final, Protocol

from ehsm_kms.storage.audit_base import AUDIT_COLUMNS, AuditEvent, AuditRecord
from ehsm_kms.storage.records import KeyRecord, KeyVersionRecord, ReplayEntry

# The key's columns in KeyRecord's field order. A key pending deletion reads as state 2; its stored state (0 or 1)
# is kept for CancelKeyDeletion.
KEY_COLUMNS: Final = (
    "k.keyid, k.appid, k.keyspec, k.usage, k.origin, "
    "CASE WHEN k.deletion_due_ms > 0 THEN 2 ELSE k.state END, "
    "k.creation_ms, k.expire_ms, k.alias, k.description, k.primary_version, "
    "k.min_decrypt_version, k.rotation_period_ms, k.next_rotation_ms, k.deletion_due_ms"
)
KEY_FIELDS: Final = 15


@dataclass(frozen=True, slots=True)
class AdminCredential:
    """The admin credential's id and its secret sealed by the core (the secret itself is never stored)."""

    admin_id: str
    blob: bytes
    created_ms: int

    def __repr__(self) -> str:
        blob = f"<{len(self.blob)} bytes>"
        return f"AdminCredential(admin_id={self.admin_id!r}, blob={blob}, created_ms={self.created_ms})"


class KeyAdminStore(Protocol):
    # ---------------------------------------------------------------- versions and rotation
    async def list_key_versions(self, keyid: str) -> list[KeyVersionRecord]:
        """Every version of the key, oldest first."""

    async def add_key_version(
        self,
        version: KeyVersionRecord,
        *,
        expected_primary: int,
        next_rotation: tuple[int, int] | None = None,
        replay: ReplayEntry | None = None,
    ) -> bool:
        """Insert ``version`` and make it the primary, in one transaction, if the primary is still
        ``expected_primary`` and the key is not pending deletion; False (nothing written) otherwise.

        ``next_rotation = (expected, new)``: an automatic rotation, which also needs the key's next rotation time to
        still be ``expected`` and moves it to ``new`` (so of several nodes, one rotates the key once per period).
        """

    async def due_rotations(self, now_ms: int, limit: int) -> list[tuple[KeyRecord, KeyVersionRecord]]:
        """Enabled internal keys whose automatic rotation is due, with their primary version; soonest first."""

    async def set_rotation(
        self, appid: str, keyid: str, period_ms: int, next_ms: int, *, replay: ReplayEntry | None = None
    ) -> bool: ...

    async def set_min_decrypt_version(
        self, appid: str, keyid: str, version: int, *, replay: ReplayEntry | None = None
    ) -> bool:
        """False when the app has no such key or ``version`` is above its primary version."""

    async def set_description(
        self, appid: str, keyid: str, description: str, *, replay: ReplayEntry | None = None
    ) -> bool: ...

    # ---------------------------------------------------------------- aliases (one per key, unique per app)
    async def get_key_by_alias(self, appid: str, alias: str) -> str | None:
        """The keyid the app's alias names."""

    async def set_alias(self, appid: str, keyid: str, alias: str, *, replay: ReplayEntry | None = None) -> None:
        """KeyNotFound, KeyHasAlias or AliasExists (the database's unique index decides) when it cannot be set."""

    async def move_alias(self, appid: str, alias: str, keyid: str, *, replay: ReplayEntry | None = None) -> None:
        """Point the alias at another key of the app, in one transaction; AliasNotFound, KeyNotFound or
        KeyHasAlias otherwise (and nothing changes)."""

    async def clear_alias(self, appid: str, alias: str, *, replay: ReplayEntry | None = None) -> bool: ...

    async def list_aliases(self, appid: str) -> list[tuple[str, str]]:
        """(alias, keyid) of every aliased key of the app, by alias."""

    # ---------------------------------------------------------------- scheduled deletion
    async def schedule_key_deletion(
        self, appid: str, keyid: str, due_ms: int, *, replay: ReplayEntry | None = None
    ) -> bool:
        """False when the app has no such key or it is already pending deletion."""

    async def cancel_key_deletion(self, appid: str, keyid: str, *, replay: ReplayEntry | None = None) -> bool:
        """False when the app has no such key or it is not pending deletion."""

    async def delete_due_keys(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        """Delete keys whose deletion is due and return their (keyid, appid): each key to exactly one caller."""

    async def due_key_deletions(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        """(keyid, appid) of keys whose deletion is due, soonest first; nothing is claimed or deleted (the job
        writes each one's audit request record before :meth:`delete_key_if_due`, with ``audit_fail_closed``)."""

    async def delete_key_if_due(self, keyid: str, now_ms: int) -> bool:
        """Delete the key if its deletion is still due at ``now_ms``; False (nothing deleted) when another caller
        deleted it or its deletion was cancelled meanwhile."""

    # ---------------------------------------------------------------- audit log
    async def append_audit(self, event: AuditEvent) -> AuditRecord:
        """Append one record to the chain (batched with the records that arrive meanwhile); durable on return."""

    async def append_audit_with_replay(self, event: AuditEvent, replay: ReplayEntry, now_ms: int) -> bool:
        """Append the record of a request that changed nothing together with its replay record, in one
        transaction: False (and the record says the replay error) when the replay record was refused. If it
        raises, neither was written."""

    async def audit_records(self, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """Records with seq > ``after_seq``, in seq order."""

    async def audit_head(self) -> tuple[int, bytes] | None:
        """The seq and hash of the last record (0 and zeros before the first); None when the head row is gone."""

    # ---------------------------------------------------------------- the admin credential
    async def get_admin_credential(self) -> AdminCredential | None: ...

    async def put_admin_credential(self, cred: AdminCredential, *, replace: bool = False) -> bool:
        """Store the admin credential; without ``replace``, False (nothing written) when one exists already."""


@dataclass(frozen=True, slots=True)
class KeyAdminQueries:
    """The statements of both backends, with ``?`` placeholders (see :meth:`with_placeholder`)."""

    list_versions: str = "SELECT keyid, version, blob, created_ms FROM key_versions WHERE keyid = ? ORDER BY version"
    bump_primary: str = (
        "UPDATE keys SET primary_version = ? WHERE keyid = ? AND primary_version = ? AND deletion_due_ms = 0"
    )
    bump_primary_due: str = (
        "UPDATE keys SET primary_version = ?, next_rotation_ms = ? WHERE keyid = ? AND primary_version = ? "
        "AND next_rotation_ms = ? AND rotation_period_ms > 0 AND deletion_due_ms = 0"
    )
    insert_version: str = "INSERT INTO key_versions (keyid, version, blob, created_ms) VALUES (?, ?, ?, ?)"
    due_rotations: str = (
        f"SELECT {KEY_COLUMNS}, v.blob, v.created_ms FROM keys k "  # noqa: S608 (fixed column list)
        "JOIN key_versions v ON v.keyid = k.keyid AND v.version = k.primary_version "
        "WHERE k.rotation_period_ms > 0 AND k.next_rotation_ms <= ? AND k.deletion_due_ms = 0 AND k.state = 1 "
        "AND k.origin = 'EH_INTERNAL_KEY' ORDER BY k.next_rotation_ms LIMIT ?"
    )
    set_rotation: str = "UPDATE keys SET rotation_period_ms = ?, next_rotation_ms = ? WHERE keyid = ? AND appid = ?"
    set_min_decrypt: str = (
        "UPDATE keys SET min_decrypt_version = ? WHERE keyid = ? AND appid = ? AND primary_version >= ?"
    )
    set_description: str = "UPDATE keys SET description = ? WHERE keyid = ? AND appid = ?"
    key_by_alias: str = "SELECT keyid FROM keys WHERE appid = ? AND alias = ?"
    key_alias: str = "SELECT alias FROM keys WHERE keyid = ? AND appid = ?"
    set_alias: str = "UPDATE keys SET alias = ? WHERE keyid = ? AND appid = ? AND alias = ''"
    clear_alias: str = "UPDATE keys SET alias = '' WHERE appid = ? AND alias = ?"
    list_aliases: str = "SELECT alias, keyid FROM keys WHERE appid = ? AND alias <> '' ORDER BY alias"
    schedule_deletion: str = "UPDATE keys SET deletion_due_ms = ? WHERE keyid = ? AND appid = ? AND deletion_due_ms = 0"
    cancel_deletion: str = "UPDATE keys SET deletion_due_ms = 0 WHERE keyid = ? AND appid = ? AND deletion_due_ms > 0"
    due_deletions: str = (
        "SELECT keyid FROM keys WHERE deletion_due_ms > 0 AND deletion_due_ms <= ? ORDER BY deletion_due_ms LIMIT ?"
    )
    due_deletion_items: str = (
        "SELECT keyid, appid FROM keys WHERE deletion_due_ms > 0 AND deletion_due_ms <= ? "
        "ORDER BY deletion_due_ms LIMIT ?"
    )
    delete_if_due: str = "DELETE FROM keys WHERE keyid = ? AND deletion_due_ms > 0 AND deletion_due_ms <= ?"
    audit_head: str = "SELECT seq, hash FROM audit_head WHERE id = 1"
    set_audit_head: str = "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"
    insert_audit: str = f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
    audit_records: str = f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?"  # noqa: S608
    get_admin: str = "SELECT admin_id, blob, created_ms FROM admin_credential WHERE id = 1"
    put_admin: str = (
        "INSERT INTO admin_credential (id, admin_id, blob, created_ms) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
    )
    replace_admin: str = (
        "INSERT INTO admin_credential (id, admin_id, blob, created_ms) VALUES (1, ?, ?, ?) ON CONFLICT (id) "
        "DO UPDATE SET admin_id = excluded.admin_id, blob = excluded.blob, created_ms = excluded.created_ms"
    )

    def with_placeholder(self, mark: str) -> KeyAdminQueries:
        return KeyAdminQueries(**{f.name: getattr(self, f.name).replace("?", mark) for f in fields(self)})


KQ: Final = KeyAdminQueries()
