"""Fixtures shared by several test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.softhsm import SoftHsm, Token


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    hsm = SoftHsm(tmp_path_factory.mktemp("softhsm"))
    hsm.activate()
    yield hsm
    hsm.close()


@pytest.fixture
def hsm_token(softhsm: SoftHsm) -> tuple[SoftHsm, Token]:
    """A fresh token of its own for each test, in the session's shared SoftHSM2 directory."""
    return softhsm, softhsm.init_token()
