"""Every action module, imported for its registrations; the server asks :data:`HANDLERS`."""

from __future__ import annotations

from ehsm_kms.service import admin, aliases, attestation, crypto, deletion, keys, secrets, versions  # noqa: F401
from ehsm_kms.service.registry import HANDLERS

__all__ = ["HANDLERS", "crypto", "keys"]
