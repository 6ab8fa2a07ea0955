"""Known answers for the core's start-up self-tests.

The answers are data files beside this module, not constants in code, so that each can be checked against the
standard it comes from (every file names its sources) and so that a changed answer shows in a data diff. They
are read with :mod:`importlib.resources`, which works from a source tree, a wheel or a zip, and needs nothing
outside the core: no store, no settings.

Each file is ``{"source": ..., "cases": [{...}, ...]}``; byte strings are lowercase hex.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ehsm_kms import errors

Data = dict[str, Any]


def load(name: str) -> Data:
    """The known answers of ``<name>.json``; a missing or damaged file stops the core like a failed test."""
    try:
        text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, ValueError):
        raise errors.CoreStartError(f"self-test data missing or damaged: {name}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data["cases"]:
        raise errors.CoreStartError(f"self-test data missing or damaged: {name}")
    return data


def unhex(case: dict[str, Any], field: str) -> bytes:
    return bytes.fromhex(case[field])
