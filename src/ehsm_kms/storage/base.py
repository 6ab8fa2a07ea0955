"""The Store protocol every backend implements, and the pieces the backends share.

Every method commits before it returns (DESIGN invariant 4): when ``create_key`` returns, the key survives a
crash of the process or of the machine. Methods that write on behalf of a signed request take ``replay=``; the
replay record and the write then commit in one transaction, and a replay writes nothing (DESIGN invariant 6).

A store that cannot be reached raises :class:`errors.StoreUnavailable` quickly; the cause is chained and a
note on the exception says what was tried (the wire message stays the generic one). Stores recover by
themselves.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, Protocol

from ehsm_kms import errors
from ehsm_kms.storage.keyadmin_base import KEY_COLUMNS, KEY_FIELDS, KeyAdminStore
from ehsm_kms.storage.quotes_base import QuoteStore
from ehsm_kms.storage.records import AppRecord, ImportRecord, KeyRecord, KeyVersionRecord, ReplayEntry
from ehsm_kms.storage.rewrap_base import RewrapStore
from ehsm_kms.storage.secrets_base import SecretStore

# The names callers use; the helpers below are shared by the backends only.
__all__ = [
    "AppRecord",
    "ImportRecord",
    "KeyRecord",
    "KeyVersionRecord",
    "RecordExists",
    "ReplayDetected",
    "ReplayEntry",
    "Store",
]


class ReplayDetected(errors.ReplayError):
    """The request's replay entry is already recorded and unexpired; nothing was written."""


class RecordExists(errors.InternalError):
    """A create hit an existing primary key (an appid or keyid is generated, so this means a bug)."""


class Store(SecretStore, KeyAdminStore, QuoteStore, RewrapStore, Protocol):
    """What the service needs from persistence. Both backends pass the same contract suite."""

    async def migrate(self) -> None:
        """Bring the schema to the newest version; harmless to run again or from two processes at once."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a query (for /readyz)."""

    # ---------------------------------------------------------------- apps
    async def create_app(self, app: AppRecord, *, replay: ReplayEntry | None = None) -> None: ...

    async def get_app(self, appid: str) -> AppRecord | None: ...

    async def list_apps(self) -> list[AppRecord]: ...

    async def update_app(
        self,
        appid: str,
        *,
        apikey_blob: bytes | None = None,
        state: str | None = None,
        replay: ReplayEntry | None = None,
    ) -> bool:
        """Change the given fields; False when there is no such app."""

    # ---------------------------------------------------------------- keys
    async def create_key(
        self, key: KeyRecord, version: KeyVersionRecord, *, replay: ReplayEntry | None = None
    ) -> None: ...

    async def get_key(self, keyid: str) -> tuple[KeyRecord, KeyVersionRecord] | None:
        """The key with its primary version, in one query."""

    async def get_key_version(self, keyid: str, version: int) -> KeyVersionRecord | None: ...

    async def list_keys(self, appid: str) -> list[KeyRecord]:
        """Every key of the app (no limit), oldest first."""

    async def set_key_state(self, appid: str, keyid: str, state: int, *, replay: ReplayEntry | None = None) -> bool:
        """False when the app has no such key (idempotent otherwise)."""

    async def delete_key(self, appid: str, keyid: str, *, replay: ReplayEntry | None = None) -> bool:
        """Delete the key, its versions and its pending import; False when the app has no such key."""

    async def delete_all_keys(self, appid: str, *, replay: ReplayEntry | None = None) -> int: ...

    async def update_key_version_blob(
        self, keyid: str, version: int, blob: bytes, *, replay: ReplayEntry | None = None
    ) -> None:
        """Replace one version's blob (BYOK import); KeyNotFound when there is no such version."""

    async def count_keys(self) -> int: ...

    async def bulk_create_keys(self, items: Sequence[tuple[KeyRecord, KeyVersionRecord]]) -> None:
        """Insert many keys in one transaction (benchmark set-up); callers pass batches of ~10,000."""

    # ---------------------------------------------------------------- replay
    async def record_request(self, entry: ReplayEntry, now_ms: int) -> bool:
        """Record a verified request; False when an unexpired entry with the same (appid, digest) exists."""

    # ---------------------------------------------------------------- BYOK import tokens
    async def put_import(self, rec: ImportRecord, *, replay: ReplayEntry | None = None) -> None:
        """Store the key's pending import, replacing an older one; KeyNotFound when there is no such key."""

    async def take_import(
        self, keyid: str, token_id: str, now_ms: int, *, replay: ReplayEntry | None = None
    ) -> ImportRecord | None:
        """Atomically remove and return the pending import if the token matches and is unexpired.

        Single use: of concurrent takers exactly one gets the record. A wrong or expired token leaves the
        pending import in place (the caller cannot tell which it was, by design).
        """

    # ---------------------------------------------------------------- enrollment tokens
    async def put_enroll_token(self, digest: bytes, expires_ms: int) -> None:
        """Store a one-time enrollment token by its digest (the token itself is never stored)."""

    async def take_enroll_token(self, digest: bytes, now_ms: int) -> bool:
        """Use the token up: True once if it exists and is unexpired (of concurrent takers, exactly one)."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def unavailable(what: str, cause: BaseException) -> errors.StoreUnavailable:
    """A StoreUnavailable whose note (seen in logs and tracebacks, never on the wire) says what failed."""
    err = errors.StoreUnavailable()
    err.add_note(f"{what}: {type(cause).__name__}: {cause}")
    return err


class PurgeSchedule:
    """Decides when expired replay rows are deleted: at most every ``interval_s``, ``batch`` rows at a time.

    A purge that removed a full batch is due again at once, so purging keeps up with any request rate without
    one purge ever taking long.
    """

    def __init__(self, interval_s: float, batch: int) -> None:
        self.interval_s = interval_s
        self.batch = batch
        self._next = 0.0
        self._lock = threading.Lock()

    def claim(self) -> bool:
        """True (once) when a purge is due; the caller then runs it and reports with :meth:`done`."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.interval_s
            return True

    def done(self, deleted: int) -> None:
        if deleted >= self.batch:
            with self._lock:
                self._next = 0.0


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgres)\.sql$")


def load_migrations(backend: str) -> list[Migration]:
    """The numbered migrations of one backend (``sqlite`` or ``postgres``), in order, numbered 1..n."""
    found: list[Migration] = []
    for entry in (resources.files("ehsm_kms.storage") / "migrations").iterdir():
        m = _MIGRATION_FILE.match(entry.name)
        if m and m.group(3) == backend:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    if [mig.version for mig in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..n: {[mig.version for mig in found]}")
    return found


def schema_too_new(found: int, known: int) -> errors.ConfigError:
    return errors.ConfigError(
        f"the database schema is at version {found}, newer than this release knows ({known}); "
        "upgrade ehsm-kms before using this database"
    )


# ---------------------------------------------------------------- SQL shared by the backends
@dataclass(frozen=True, slots=True)
class Queries:
    """The statements both SQL backends run, written once with ``?`` placeholders.

    Column lists follow the records' field order, so a row becomes a record positionally.
    """

    insert_app: str = "INSERT INTO apps (appid, apikey_blob, created_ms, state) VALUES (?, ?, ?, ?)"
    get_app: str = "SELECT appid, apikey_blob, created_ms, state FROM apps WHERE appid = ?"
    list_apps: str = "SELECT appid, apikey_blob, created_ms, state FROM apps ORDER BY created_ms, appid"
    insert_key: str = (
        "INSERT INTO keys (keyid, appid, keyspec, usage, origin, state, creation_ms, expire_ms, alias, "
        "description, primary_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    insert_version: str = "INSERT INTO key_versions (keyid, version, blob, created_ms) VALUES (?, ?, ?, ?)"
    # The key with its primary version: the key's columns, then the version's blob and created_ms.
    get_key: str = (
        f"SELECT {KEY_COLUMNS}, v.blob, v.created_ms FROM keys k "  # noqa: S608 (fixed column list)
        "JOIN key_versions v ON v.keyid = k.keyid AND v.version = k.primary_version WHERE k.keyid = ?"
    )
    get_version: str = "SELECT keyid, version, blob, created_ms FROM key_versions WHERE keyid = ? AND version = ?"
    list_keys: str = f"SELECT {KEY_COLUMNS} FROM keys k WHERE k.appid = ? ORDER BY k.creation_ms, k.keyid"  # noqa: S608
    key_exists: str = "SELECT 1 FROM keys WHERE keyid = ?"
    set_key_state: str = "UPDATE keys SET state = ? WHERE keyid = ? AND appid = ?"
    delete_key: str = "DELETE FROM keys WHERE keyid = ? AND appid = ?"
    delete_app_keys: str = "DELETE FROM keys WHERE appid = ?"
    set_version_blob: str = "UPDATE key_versions SET blob = ? WHERE keyid = ? AND version = ?"
    count_keys: str = "SELECT count(*) FROM keys"
    # Accepted (one row changed) unless an unexpired row exists; an expired one is taken over.
    record_replay: str = (
        "INSERT INTO replay (appid, digest, expires_ms) VALUES (?, ?, ?) ON CONFLICT (appid, digest) "
        "DO UPDATE SET expires_ms = excluded.expires_ms WHERE replay.expires_ms <= ?"
    )
    # For a batch: rows that conflicted on insert take over an expired entry, each with its caller's now.
    take_over_replay: str = "UPDATE replay SET expires_ms = ? WHERE appid = ? AND digest = ? AND expires_ms <= ?"
    put_import: str = (
        "INSERT INTO import_tokens (keyid, token_id, wrapping_blob, wrapping_spec, expires_ms) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (keyid) DO UPDATE SET token_id = excluded.token_id, "
        "wrapping_blob = excluded.wrapping_blob, wrapping_spec = excluded.wrapping_spec, "
        "expires_ms = excluded.expires_ms"
    )
    get_import: str = (
        "SELECT keyid, token_id, wrapping_blob, wrapping_spec, expires_ms FROM import_tokens WHERE keyid = ?"
    )
    delete_import: str = "DELETE FROM import_tokens WHERE keyid = ?"
    put_enroll_token: str = (
        "INSERT INTO enroll_tokens (digest, expires_ms) VALUES (?, ?) "
        "ON CONFLICT (digest) DO UPDATE SET expires_ms = excluded.expires_ms"
    )
    take_enroll_token: str = "DELETE FROM enroll_tokens WHERE digest = ? RETURNING expires_ms"
    create_schema_version: str = (
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version integer PRIMARY KEY, name text NOT NULL, applied_ms bigint NOT NULL)"
    )
    schema_version: str = "SELECT coalesce(max(version), 0) FROM schema_version"
    insert_schema_version: str = "INSERT INTO schema_version (version, name, applied_ms) VALUES (?, ?, ?)"

    def with_placeholder(self, mark: str) -> Queries:
        """The same statements with another driver's placeholder (no statement contains a literal ``?``)."""
        return Queries(**{f.name: getattr(self, f.name).replace("?", mark) for f in fields(self)})


QUERIES = Queries()


def key_row(key: KeyRecord) -> tuple[object, ...]:
    return (
        key.keyid,
        key.appid,
        key.keyspec,
        key.usage,
        key.origin,
        key.state,
        key.creation_ms,
        key.expire_ms,
        key.alias,
        key.description,
        key.primary_version,
    )


def version_row(version: KeyVersionRecord) -> tuple[object, ...]:
    return (version.keyid, version.version, version.blob, version.created_ms)


def import_row(rec: ImportRecord) -> tuple[object, ...]:
    return (rec.keyid, rec.token_id, rec.wrapping_blob, rec.wrapping_spec, rec.expires_ms)


_KEY_FIELDS = KEY_FIELDS


def key_with_primary(row: Sequence[Any]) -> tuple[KeyRecord, KeyVersionRecord]:
    key = KeyRecord(*row[:_KEY_FIELDS])
    blob, created_ms = row[_KEY_FIELDS:]
    return key, KeyVersionRecord(key.keyid, key.primary_version, blob, created_ms)


def check_new_key(key: KeyRecord, version: KeyVersionRecord) -> None:
    """A new key's version must be its own primary one, or get_key could never find it."""
    if version.keyid != key.keyid or version.version != key.primary_version:
        raise ValueError(f"key {key.keyid}: the version given is not its primary version")


def token_matches(rec: ImportRecord, token_id: str, now_ms: int) -> bool:
    """Constant-time token comparison (DESIGN invariant 7), then expiry."""
    return hmac.compare_digest(rec.token_id.encode(), token_id.encode()) and now_ms < rec.expires_ms


def first_occurrences(entries: Sequence[ReplayEntry]) -> list[int]:
    """Indexes of the entries whose (appid, digest) did not come earlier in the sequence.

    A batch of replay records sends each key once; a later duplicate in the same batch is a replay.
    """
    seen: set[tuple[str, bytes]] = set()
    firsts = []
    for index, entry in enumerate(entries):
        key = (entry.appid, entry.digest)
        if key not in seen:
            seen.add(key)
            firsts.append(index)
    return firsts
