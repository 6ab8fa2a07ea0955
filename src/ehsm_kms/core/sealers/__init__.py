"""Sealers keep the domain-key ring at rest: in a PKCS#11 token, under a passphrase, or (dev) in the clear."""

from __future__ import annotations

from ehsm_kms.core.sealers.base import Sealer, sealed_by
from ehsm_kms.core.sealers.file import FileSealer
from ehsm_kms.core.sealers.passphrase import PassphraseSealer, read_passphrase
from ehsm_kms.core.sealers.pkcs11 import Pkcs11Sealer

__all__ = ["FileSealer", "PassphraseSealer", "Pkcs11Sealer", "Sealer", "read_passphrase", "sealed_by"]
