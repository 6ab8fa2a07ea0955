"""Fixtures of the SDK suite: a live server, the app in-process, and the four client/server pairings."""

from __future__ import annotations

from tests.client.harness import kms, live_server, servers
from tests.pg import pg_run, pg_schema

__all__ = ["kms", "live_server", "pg_run", "pg_schema", "servers"]
