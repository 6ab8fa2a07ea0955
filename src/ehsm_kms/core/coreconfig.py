"""The core's start-up settings, sent to the isolated core as its first message. Pure: no key handling here."""

from __future__ import annotations

import msgspec

SEALERS = ("passphrase", "pkcs11", "file")


class CoreConfig(msgspec.Struct, frozen=True):
    sealer: str
    sealed_path: str
    create: bool = True
    secret_source: str | None = None  # "file:<path>" | "env:<VAR>" (passphrase or PIN)
    secret: bytes | None = None  # only when typed at a prompt by the parent
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token: str = "ehsm-kms"
    pkcs11_key_label: str = "ehsm-kms-dk-wrap"
    allow_file_sealer: bool = False
    run_self_tests: bool = True
    scrypt_n: int = 2**15

    def __repr__(self) -> str:  # never show the secret
        return f"CoreConfig(sealer={self.sealer!r}, sealed_path={self.sealed_path!r})"
