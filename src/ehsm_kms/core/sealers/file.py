"""The file sealer: the DK ring in plaintext, for development only.

It protects nothing; it exists so a laptop can run the service without an HSM or a passphrase. It must be
allowed explicitly, and it says so in the log every time it is used. A SHA-256 checksum catches a damaged
file (it is no defence against anyone who can write the file: they can read the DK anyway).

Body after the envelope header (:mod:`.base`)::

    offset  size  field
    0       32    SHA-256(envelope header || ring)
    32      ...   the serialized ring, in the clear
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from ehsm_kms import errors
from ehsm_kms.core.sealers import base

log = logging.getLogger("ehsm_kms.core")

REFUSED = "the 'file' sealer stores the domain key in plaintext; it is refused unless explicitly allowed"
_DIGEST = 32


class FileSealer:
    name = "file"

    __slots__ = ("_allow",)

    def __init__(self, allow: bool) -> None:
        if allow is not True:
            raise errors.CoreStartError(REFUSED)
        self._allow = allow

    def __repr__(self) -> str:
        return "FileSealer(allow=True)"

    def seal(self, data: bytes) -> bytes:
        self._check()
        log.warning("the domain key is written unprotected (plaintext 'file' sealer): for development only")
        head = base.header(self.name)
        return head + hashlib.sha256(head + data).digest() + data

    def unseal(self, sealed: bytes) -> bytes:
        self._check()
        head, body = base.split(self.name, sealed)
        log.warning("the domain key is read from an unprotected file (plaintext 'file' sealer): for development only")
        digest, data = body[:_DIGEST], body[_DIGEST:]
        if len(digest) != _DIGEST or not hmac.compare_digest(digest, hashlib.sha256(head + data).digest()):
            raise errors.CoreStartError("cannot unseal the domain key: damaged sealed file (checksum mismatch)")
        return data

    def _check(self) -> None:
        if getattr(self, "_allow", False) is not True:
            raise errors.CoreStartError(REFUSED)
