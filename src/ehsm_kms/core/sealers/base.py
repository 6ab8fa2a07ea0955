"""What a sealer is, and the small header every sealed domain-key file starts with.

A sealer protects the serialized DK ring at rest (PKCS#11 token, passphrase, or nothing in development). The
header names the sealer that wrote the file, so a node started with a different sealer says exactly that
instead of reporting a wrong secret. Sealers that authenticate pass the header to their AEAD as associated
data.

Sealed file layout::

    offset  size  field
    0       8     magic b"EHSEALED"
    8       1     envelope version (1)
    9       1     length L of the sealer name (1..32)
    10      L     sealer name (ASCII): "pkcs11", "passphrase", "file"
    10+L    ...   the sealer's own body (see each sealer's module)
"""

from __future__ import annotations

from typing import Protocol

from ehsm_kms import errors

MAGIC = b"EHSEALED"
ENVELOPE_VERSION = 1
_MAX_NAME = 32


class Sealer(Protocol):
    """Seals the DK ring for storage; ``unseal`` raises CoreStartError with the reason it cannot."""

    name: str

    def seal(self, data: bytes) -> bytes: ...

    def unseal(self, sealed: bytes) -> bytes: ...


def header(name: str) -> bytes:
    raw = name.encode("ascii")
    if not 1 <= len(raw) <= _MAX_NAME:
        raise ValueError("a sealer name is 1 to 32 ASCII characters")
    return MAGIC + bytes([ENVELOPE_VERSION, len(raw)]) + raw


def sealed_by(sealed: bytes) -> str:
    """The name of the sealer that made ``sealed``; CoreStartError if it is not a sealed domain-key file."""
    if len(sealed) < len(MAGIC) + 2 or sealed[: len(MAGIC)] != MAGIC:
        raise errors.CoreStartError("not a sealed domain-key file (bad magic)")
    version, length = sealed[len(MAGIC)], sealed[len(MAGIC) + 1]
    if version != ENVELOPE_VERSION:
        raise errors.CoreStartError(f"sealed domain-key file of unknown envelope version {version}")
    start = len(MAGIC) + 2
    raw = sealed[start : start + length]
    if not 1 <= length <= _MAX_NAME or len(raw) != length:
        raise errors.CoreStartError("damaged sealed domain-key file (bad header)")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise errors.CoreStartError("damaged sealed domain-key file (bad header)") from None


def split(name: str, sealed: bytes) -> tuple[bytes, bytes]:
    """(header, body) of a file the sealer ``name`` made; CoreStartError naming the maker if another did."""
    found = sealed_by(sealed)
    if found != name:
        raise errors.CoreStartError(
            f"the sealed domain key was made by the '{found}' sealer, but the '{name}' sealer is configured"
        )
    head = header(name)
    return head, sealed[len(head) :]
