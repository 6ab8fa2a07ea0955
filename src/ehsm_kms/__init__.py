"""ehsm-kms: a self-hosted Key Management Service, wire-compatible with eHSM-KMS."""

from __future__ import annotations

__version__ = "0.1.0"
