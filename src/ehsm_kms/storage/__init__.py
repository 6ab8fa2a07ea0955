"""Persistence: the Store protocol, its records, and the SQLite and PostgreSQL backends.

``open_store(url)`` picks the backend by URL; nothing connects until the first call (normally ``migrate()``):

- ``sqlite:///data/ehsm.db`` (relative path) or ``sqlite:////var/lib/ehsm-kms/ehsm.db`` (absolute path);
- ``postgresql://user@host:5432/db`` (or ``postgres://``), any libpq URL. Extra query parameters read by the
  store itself: ``schema`` (created by ``migrate()``; the store's tables live there), ``pool_min_size``,
  ``pool_max_size``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ehsm_kms import errors
from ehsm_kms.storage.base import RecordExists, ReplayDetected, Store
from ehsm_kms.storage.postgres import PostgresStore
from ehsm_kms.storage.records import AppRecord, ImportRecord, KeyRecord, KeyVersionRecord, ReplayEntry
from ehsm_kms.storage.sqlite import SqliteStore

__all__ = [
    "AppRecord",
    "ImportRecord",
    "KeyRecord",
    "KeyVersionRecord",
    "PostgresStore",
    "RecordExists",
    "ReplayDetected",
    "ReplayEntry",
    "SqliteStore",
    "Store",
    "open_store",
]

_PG_OPTIONS = {"schema": str, "pool_min_size": int, "pool_max_size": int}


def open_store(url: str) -> Store:
    """The store a URL names (see the module docstring); ConfigError for a URL it does not understand."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else ""
        if not path or path == ":memory:" or "?" in path:
            raise errors.ConfigError("a SQLite store URL is sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return SqliteStore(path)
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(url)
        kept, options = [], dict[str, Any]()
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in _PG_OPTIONS:
                try:
                    options[name] = _PG_OPTIONS[name](value)
                except ValueError:
                    raise errors.ConfigError(f"store URL parameter {name} must be a number") from None
            else:
                kept.append((name, value))
        conninfo = urlunsplit(parts._replace(query=urlencode(kept)))
        return PostgresStore(
            conninfo,
            schema=options.get("schema"),
            min_size=options.get("pool_min_size", 1),
            max_size=options.get("pool_max_size", 10),
        )
    raise errors.ConfigError("the store URL must start with sqlite:/// or postgresql://")
