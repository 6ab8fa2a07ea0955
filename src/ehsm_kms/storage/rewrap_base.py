"""The blobs wrapped under the domain key, as the online rewrap (:mod:`ehsm_kms.service.rewrap`) sees them.

Every DK-wrapped blob in the store is one of :data:`BLOB_KINDS`: a CMK version's key material (``key_versions``), an
app's APIKey (``apps``), an app's default secret key (``secret_default_keys``), the admin credential
(``admin_credential``), and a pending BYOK import's wrapping key (``import_tokens``). Secret values are sealed under
a CMK or the default secret key, not under the DK, so they need no rewrap.

A keyblob names its DK version in bytes 6..9 of its header (big-endian, :mod:`ehsm_kms.core.keyblob`), so the
store finds the blobs still under another version with a plain byte comparison (``substr`` / ``substring``): no
extra column and no migration, and a blob already rewrapped is never read again. Rows come in primary-key order
after a cursor, so a batch is an index range. External keys whose material was never imported have an empty blob
and are not DK-wrapped at all; they are skipped.

Writes are compare-and-set: a row is updated only if its blob is still exactly the one read, so a concurrent
change (an APIKey rotation, a new admin credential, an import) is never overwritten by a rewrap of the old value.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ehsm_kms import errors

__all__ = [
    "BLOB_KINDS",
    "RewrapQueries",
    "RewrapStore",
    "WrappedBlob",
    "dk_version_bytes",
    "queries_of",
    "rewrap_queries",
]

BLOB_KINDS: Final = ("cmk", "apikey", "secret-default-key", "admin", "import")
_MIN_BLOB: Final = 37  # header (21) + GCM tag (16): anything shorter is no keyblob


@dataclass(frozen=True, slots=True)
class WrappedBlob:
    """One DK-wrapped blob and what its binding is built from.

    ``keyid`` is the row's key: the keyid (cmk, import), the appid (apikey, secret-default-key) or the admin id.
    ``version`` is the CMK version (cmk), the key's primary version (import: the one its token was made for), or 0.
    ``keyspec``/``usage``/``origin`` are the names the store keeps (import: the wrapping key's spec), or "".
    """

    kind: str
    keyid: str
    version: int
    appid: str
    keyspec: str
    usage: str
    origin: str
    blob: bytes

    @property
    def cursor(self) -> tuple[str, int]:
        return (self.keyid, self.version)

    def __repr__(self) -> str:
        return f"WrappedBlob({self.kind}, {self.keyid!r}, version={self.version}, blob=<{len(self.blob)} bytes>)"


class RewrapStore(Protocol):
    async def stale_blobs(
        self, kind: str, dk_version: int, after: tuple[str, int] | None, limit: int
    ) -> list[WrappedBlob]:
        """Up to ``limit`` blobs of ``kind`` under another DK version than ``dk_version``, after the cursor
        ``after`` (a previous row's :attr:`WrappedBlob.cursor`) in primary-key order."""

    async def count_stale_blobs(self, dk_version: int) -> dict[str, int]:
        """For each kind, how many blobs are under another DK version than ``dk_version``."""

    async def replace_blobs(self, kind: str, changes: Sequence[tuple[WrappedBlob, bytes]]) -> int:
        """Write each new blob in one transaction, each only where the row still holds the blob read (compare-and-
        set); the number of rows updated (the others changed meanwhile and were left alone)."""


def dk_version_bytes(version: int) -> bytes:
    return struct.pack(">I", version)


@dataclass(frozen=True, slots=True)
class RewrapQueries:
    """For one kind: select (after a cursor), count, and the compare-and-set update, with ``?`` placeholders."""

    select: str
    select_first: str
    count: str
    update: str
    two_part_cursor: bool

    def with_placeholder(self, mark: str) -> RewrapQueries:
        return RewrapQueries(
            self.select.replace("?", mark),
            self.select_first.replace("?", mark),
            self.count.replace("?", mark),
            self.update.replace("?", mark),
            self.two_part_cursor,
        )

    def cursor_params(self, after: tuple[str, int]) -> tuple[Any, ...]:
        return after if self.two_part_cursor else (after[0],)

    def update_params(self, row: WrappedBlob, new: bytes) -> tuple[Any, ...]:
        if self.two_part_cursor:
            return (new, row.keyid, row.version, row.blob)
        return (new, row.keyid, row.blob)


# (table and columns, the blob column, the primary key, the update) per kind; {v} is the backend's way to take the
# DK version bytes of a blob column, {n} its byte-length function.
_KINDS: Final[dict[str, tuple[str, str, str, str, str]]] = {
    "cmk": (
        "SELECT v.keyid, v.version, k.appid, k.keyspec, k.usage, k.origin, v.blob "
        "FROM key_versions v JOIN keys k ON k.keyid = v.keyid",
        "v.blob",
        "(v.keyid, v.version) > (?, ?)",
        "ORDER BY v.keyid, v.version",
        "UPDATE key_versions SET blob = ? WHERE keyid = ? AND version = ? AND blob = ?",
    ),
    "apikey": (
        "SELECT appid, 0, appid, '', '', '', apikey_blob FROM apps",
        "apikey_blob",
        "appid > ?",
        "ORDER BY appid",
        "UPDATE apps SET apikey_blob = ? WHERE appid = ? AND apikey_blob = ?",
    ),
    "secret-default-key": (
        "SELECT appid, 0, appid, '', '', '', blob FROM secret_default_keys",
        "blob",
        "appid > ?",
        "ORDER BY appid",
        "UPDATE secret_default_keys SET blob = ? WHERE appid = ? AND blob = ?",
    ),
    "admin": (
        "SELECT admin_id, 0, admin_id, '', '', '', blob FROM admin_credential",
        "blob",
        "admin_id > ?",
        "ORDER BY admin_id",
        "UPDATE admin_credential SET blob = ? WHERE admin_id = ? AND blob = ?",
    ),
    "import": (
        "SELECT i.keyid, k.primary_version, k.appid, i.wrapping_spec, '', '', i.wrapping_blob "
        "FROM import_tokens i JOIN keys k ON k.keyid = i.keyid",
        "i.wrapping_blob",
        "i.keyid > ?",
        "ORDER BY i.keyid",
        "UPDATE import_tokens SET wrapping_blob = ? WHERE keyid = ? AND wrapping_blob = ?",
    ),
}


def rewrap_queries(version_of: str, length_of: str) -> dict[str, RewrapQueries]:
    """The statements of every kind for a backend: ``version_of``/``length_of`` are format strings taking the
    blob column (SQLite ``substr({}, 6, 4)`` / ``length({})``)."""
    out: dict[str, RewrapQueries] = {}
    for kind, (select, column, after, order, update) in _KINDS.items():
        stale = f"{length_of.format(column)} >= {_MIN_BLOB} AND {version_of.format(column)} <> ?"
        count_from = select.split(" FROM ", 1)[1]
        out[kind] = RewrapQueries(
            select=f"{select} WHERE {stale} AND {after} {order} LIMIT ?",
            select_first=f"{select} WHERE {stale} {order} LIMIT ?",
            count=f"SELECT count(*) FROM {count_from} WHERE {stale}",  # noqa: S608 (constants only)
            update=update,
            two_part_cursor=kind == "cmk",
        )
    return out


def blob_from_row(kind: str, row: Sequence[Any]) -> WrappedBlob:
    return WrappedBlob(
        kind=kind,
        keyid=str(row[0]),
        version=int(row[1]),
        appid=str(row[2]),
        keyspec=str(row[3]),
        usage=str(row[4]),
        origin=str(row[5]),
        blob=bytes(row[6]),
    )


def queries_of(table: dict[str, RewrapQueries], kind: str) -> RewrapQueries:
    """A backend's statements for one blob kind; ConfigError naming the kinds for another."""
    if kind not in table:
        raise errors.ConfigError(f"unknown blob kind {kind!r}; one of {', '.join(BLOB_KINDS)}")
    return table[kind]
