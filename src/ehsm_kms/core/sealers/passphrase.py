"""The passphrase sealer: the DK ring under a key derived from an operator's passphrase with scrypt.

For machines without an HSM or TPM. The passphrase has to come from somewhere at every start (a file
readable only by the service, an environment variable, or a hidden prompt); :func:`read_passphrase` reads
those.

Body after the envelope header (:mod:`.base`), integers big-endian::

    offset  size  field
    0       1     KDF (1 = scrypt)
    1       1     log2(N)
    2       4     r (u32)
    6       4     p (u32)
    10      16    salt (random per seal)
    26      12    nonce (random per seal)
    38      n+16  AES-256-GCM(KEK, nonce, ring, aad = envelope header || body[0:38]) with its tag

KEK = scrypt(passphrase, salt, N, r, p, 32 bytes). The parameters travel in the file so that a sealer with
other defaults still opens an older file; they are bounded on the way in so a crafted file cannot ask for
unbounded memory.
"""

from __future__ import annotations

import getpass
import os
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ehsm_kms import errors
from ehsm_kms.core.sealers import base
from ehsm_kms.core.secret import SecretBytes

KDF_SCRYPT = 1
SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_MEMORY = 1 << 30  # 128 * N * r bytes; 1 GiB
MAX_P = 16

_PARAMS = struct.Struct(">BBII")
_PREFIX = _PARAMS.size + SALT_SIZE + NONCE_SIZE  # 38

WRONG = "cannot unseal the domain key: wrong passphrase or damaged sealed file"


class PassphraseSealer:
    name = "passphrase"

    __slots__ = ("_log_n", "_p", "_passphrase", "_r")

    def __init__(self, passphrase: bytes, *, n: int = 2**15, r: int = 8, p: int = 1) -> None:
        if not isinstance(passphrase, bytes) or not passphrase:
            raise errors.CoreStartError("the domain-key passphrase is empty")
        log_n = n.bit_length() - 1
        if n < 2 or n != 1 << log_n or not _params_ok(log_n, r, p):
            raise errors.CoreStartError(
                f"bad scrypt parameters: N must be a power of two >= 2, 1 <= p <= {MAX_P}, 128*N*r <= 1 GiB"
            )
        self._passphrase = SecretBytes(passphrase)
        self._log_n, self._r, self._p = log_n, r, p

    def __repr__(self) -> str:
        return f"PassphraseSealer(n=2**{self._log_n}, r={self._r}, p={self._p}, passphrase=<hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a sealer cannot be pickled")

    def seal(self, data: bytes) -> bytes:
        head = base.header(self.name)
        salt, nonce = os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE)
        prefix = _PARAMS.pack(KDF_SCRYPT, self._log_n, self._r, self._p) + salt + nonce
        kek = self._kek(salt, self._log_n, self._r, self._p)
        return head + prefix + AESGCM(kek).encrypt(nonce, data, head + prefix)

    def unseal(self, sealed: bytes) -> bytes:
        head, body = base.split(self.name, sealed)
        if len(body) < _PREFIX + TAG_SIZE:
            raise errors.CoreStartError("cannot unseal the domain key: the sealed file is truncated")
        kdf, log_n, r, p = _PARAMS.unpack_from(body)
        if kdf != KDF_SCRYPT:
            raise errors.CoreStartError(f"cannot unseal the domain key: unknown key-derivation function {kdf}")
        if not _params_ok(log_n, r, p):
            raise errors.CoreStartError(
                "cannot unseal the domain key: the sealed file asks for scrypt parameters out of bounds"
            )
        salt = body[_PARAMS.size : _PARAMS.size + SALT_SIZE]
        nonce = body[_PARAMS.size + SALT_SIZE : _PREFIX]
        kek = self._kek(salt, log_n, r, p)
        try:
            return AESGCM(kek).decrypt(nonce, body[_PREFIX:], head + body[:_PREFIX])
        except InvalidTag:
            raise errors.CoreStartError(WRONG) from None

    def _kek(self, salt: bytes, log_n: int, r: int, p: int) -> bytes:
        return Scrypt(salt=salt, length=32, n=1 << log_n, r=r, p=p).derive(self._passphrase.reveal())


def _params_ok(log_n: int, r: int, p: int) -> bool:
    return 1 <= log_n <= 30 and r >= 1 and 1 <= p <= MAX_P and 128 * (1 << log_n) * r <= MAX_MEMORY


def read_passphrase(source: str, *, environ: Mapping[str, str] | None = None) -> bytes:
    """The passphrase named by ``source``: "file:<path>", "env:<VAR>" or "prompt" (hidden, never echoed).

    A file's single trailing newline is dropped (editors add one). ``environ`` defaults to the process
    environment; the config module passes the mapping it read, so that it stays the one reader of
    ``os.environ``.
    """
    kind, _, rest = source.partition(":")
    if kind == "file" and rest:
        try:
            value = Path(rest).read_bytes()
        except OSError as exc:
            raise errors.ConfigError(f"cannot read the passphrase file {rest}: {exc.strerror}") from None
        if value.endswith(b"\r\n"):
            value = value[:-2]
        elif value.endswith(b"\n"):
            value = value[:-1]
    elif kind == "env" and rest:
        env = os.environ if environ is None else environ
        text = env.get(rest)
        if text is None:
            raise errors.ConfigError(f"the environment variable {rest} (the passphrase source) is not set")
        value = text.encode("utf-8", "surrogateescape")
    elif source == "prompt":
        value = _prompt()
    else:
        # The source is not repeated: a passphrase pasted where its source belongs must not reach a log.
        raise errors.ConfigError("unknown passphrase source: use 'file:<path>', 'env:<VARIABLE>' or 'prompt'")
    if not value:
        raise errors.ConfigError("the domain-key passphrase is empty")
    return value


def _prompt() -> bytes:
    # Without a terminal getpass falls back to reading stdin *with echo* after a warning; refuse that instead.
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            text = getpass.getpass("Domain-key passphrase: ")
        except getpass.GetPassWarning:
            raise errors.ConfigError(
                "cannot prompt for the domain-key passphrase without a terminal (it would be echoed)"
            ) from None
        except EOFError:
            raise errors.ConfigError("no domain-key passphrase was entered") from None
    return text.encode("utf-8", "surrogateescape")
