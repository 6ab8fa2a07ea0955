"""The core's start-up settings, sent to the isolated core as its first message. Pure: no key handling here."""

from __future__ import annotations

import msgspec

# What a call gets while the core has no domain-key ring yet (cluster mode, waiting for the dkeycache).
WAITING_FOR_RING = "the core is waiting for the domain key"

SEALERS = ("passphrase", "pkcs11", "tpm2", "file")


class CoreConfig(msgspec.Struct, frozen=True):
    sealer: str
    sealed_path: str
    create: bool = True
    secret_source: str | None = None  # "file:<path>" | "env:<VAR>" (passphrase or PIN)
    secret: bytes | None = None  # only when typed at a prompt by the parent
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token: str = "ehsm-kms"
    pkcs11_key_label: str = "ehsm-kms-dk-wrap"
    tpm2_tcti: str = "device:/dev/tpmrm0"
    allow_file_sealer: bool = False
    run_self_tests: bool = True
    scrypt_n: int = 2**15
    # Where the ring comes from: "single" = the sealed file above; "cluster" = the machine's dkeycache socket.
    run_mode: str = "single"
    dkeycache_socket: str = ""
    dk_fetch_timeout_s: float = 2.0

    def __repr__(self) -> str:  # never show the secret
        if self.run_mode == "cluster":
            return f"CoreConfig(run_mode='cluster', dkeycache_socket={self.dkeycache_socket!r})"
        return f"CoreConfig(sealer={self.sealer!r}, sealed_path={self.sealed_path!r})"
