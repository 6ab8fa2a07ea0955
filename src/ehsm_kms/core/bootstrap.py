"""How a core comes up: which sealer guards the domain key, where the sealed file is, and opening it.

Used by the in-process core and by the isolated core's child process alike; in the isolated mode only the child
runs :func:`open_ring`, so the parent never holds the domain key. Secrets given by ``file:`` or ``env:`` sources are
read by the child itself; only a secret typed at a prompt passes through the parent (as bytes in the init message).
"""

from __future__ import annotations

from pathlib import Path

from ehsm_kms import errors
from ehsm_kms.core import dk
from ehsm_kms.core.coreconfig import SEALERS, CoreConfig
from ehsm_kms.core.sealers import file as file_sealer
from ehsm_kms.core.sealers import passphrase as passphrase_sealer
from ehsm_kms.core.sealers.base import Sealer


def _secret(cfg: CoreConfig) -> bytes:
    if cfg.secret is not None:
        return cfg.secret
    if not cfg.secret_source:
        raise errors.CoreStartError(f"the '{cfg.sealer}' sealer needs a secret (a passphrase or PIN source)")
    try:
        return passphrase_sealer.read_passphrase(cfg.secret_source)
    except errors.EhsmError:
        raise
    except OSError as exc:
        raise errors.CoreStartError(f"cannot read the sealer secret: {exc.strerror}") from None


def make_sealer(cfg: CoreConfig) -> Sealer:
    if cfg.sealer == "passphrase":
        return passphrase_sealer.PassphraseSealer(_secret(cfg), n=cfg.scrypt_n)
    if cfg.sealer == "pkcs11":
        from ehsm_kms.core.sealers import pkcs11 as pkcs11_sealer

        return pkcs11_sealer.Pkcs11Sealer(
            cfg.pkcs11_module, cfg.pkcs11_token, _secret(cfg).decode("utf-8"), cfg.pkcs11_key_label
        )
    if cfg.sealer == "tpm2":
        from ehsm_kms.core.sealers import tpm2 as tpm2_sealer

        return tpm2_sealer.Tpm2Sealer(cfg.tpm2_tcti)
    if cfg.sealer == "file":
        return file_sealer.FileSealer(allow=cfg.allow_file_sealer)
    raise errors.CoreStartError(f"unknown sealer {cfg.sealer!r}; choose one of {', '.join(SEALERS)}")


def open_ring(cfg: CoreConfig) -> dk.DomainKeyRing:
    return dk.load_or_create(make_sealer(cfg), Path(cfg.sealed_path), create=cfg.create)
