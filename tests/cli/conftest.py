"""Fixtures of the CLI suite: a live server, and a CLI runner with its own config directory and environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.harness import Cli, Enrolled
from tests.client.harness import live_server
from tests.live import LiveServer

__all__ = ["live_server"]


@pytest.fixture
def cli(tmp_path: Path, live_server: LiveServer) -> Cli:
    return Cli(tmp_path / "config", live_server.url)


@pytest.fixture
def enrolled(cli: Cli) -> Enrolled:
    """An app enrolled through the CLI, its credentials saved in the 'default' profile."""
    return cli.enroll()
