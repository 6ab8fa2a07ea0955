"""Tests of the core; helpers shared by its test modules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ehsm_kms import errors

DATA = Path(__file__).resolve().parent.parent / "data"


def load_data(name: str) -> Any:
    """A JSON file of tests/data; fail (never skip) when it is missing."""
    path = DATA / name
    if not path.is_file():
        pytest.fail(f"test data not found: {path}")
    return json.loads(path.read_text())


def assert_decryption_failed(fn: Callable[[], object]) -> None:
    """``fn`` fails with exactly the one decryption error: same class, default message, no cause attached."""
    with pytest.raises(errors.DecryptionFailed) as info:
        fn()
    exc = info.value
    assert type(exc) is errors.DecryptionFailed
    assert exc.message == errors.DecryptionFailed.default_message
    assert str(exc) == errors.DecryptionFailed.default_message
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]
