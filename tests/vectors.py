"""Where the shared test data lives, and loaders that fail (never skip) when it is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
VECTORS = SHARED / "vectors"


def load_vectors(relpath: str) -> Any:
    """Load a JSON file from ../shared/vectors; fail (never skip) with the path when it is missing."""
    path = VECTORS / relpath
    if not path.is_file():
        pytest.fail(f"test vectors not found: looked for {path} (../shared/vectors relative to the repository root)")
    return json.loads(path.read_text())


def vector_path(relpath: str) -> Path:
    path = VECTORS / relpath
    if not path.exists():
        pytest.fail(f"test data not found: looked for {path} (../shared/vectors relative to the repository root)")
    return path
