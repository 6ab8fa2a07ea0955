"""Tests of the pure wire layer (ehsm_kms.wire)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data"


def load_data(name: str) -> Any:
    """A JSON file of tests/data (hand-written from the wire contract)."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))
