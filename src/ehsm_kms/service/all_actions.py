"""Every action module, imported for its registrations; the server asks :data:`HANDLERS`."""

from __future__ import annotations

from ehsm_kms.service import crypto, keys
from ehsm_kms.service.registry import HANDLERS

__all__ = ["HANDLERS", "crypto", "keys"]
