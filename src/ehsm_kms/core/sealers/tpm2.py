"""The TPM 2.0 sealer: the DK ring under a key that only this machine's TPM can unseal.

A TPM seals at most 128 bytes into one object, and a ring grows with every rotation, so the TPM seals a random
32-byte key-encryption key (KEK) and the ring is AES-256-GCM under that KEK. The sealed object (a keyedhash
object with ``fixedTPM | fixedParent``) lives under a primary storage key of the owner hierarchy; that primary
key is derived from the TPM's owner seed with a fixed template, so it is the same after every restart and needs
no persistent handle, and another TPM (or this one after ``tpm2_clear``) derives another key and cannot load the
object at all. The TPM does not hand the object out in the clear: its private part is encrypted and
integrity-protected under the primary key.

Body after the envelope header (:mod:`.base`), integers big-endian::

    offset  size  field
    0       1     format (1 = TPM-sealed KEK, AES-256-GCM)
    1       2     length P of the sealed object's public part, then P bytes (TPM2B_PUBLIC, marshalled)
    3+P     2     length Q of its private part, then Q bytes (TPM2B_PRIVATE, marshalled)
    5+P+Q   12    nonce
    17+P+Q  n+16  AES-256-GCM(KEK, nonce, ring, aad = envelope header || body up to the nonce's end)

Who can unseal: any process that can talk to this TPM (the object has no authorization value), so the file and
the TPM device must be kept to the dkeyserver's user; what it protects against is a stolen disk or backup.
tpm2-pytss is imported only when this sealer is used.
"""

from __future__ import annotations

import os
import struct
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ehsm_kms import errors
from ehsm_kms.core.sealers import base

FORMAT = 1
KEK_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
PRIMARY_TEMPLATE = "ecc256:aes128cfb"
_LEN = struct.Struct(">H")


class Tpm2Sealer:
    name = "tpm2"

    __slots__ = ("tcti",)

    def __init__(self, tcti: str) -> None:
        if not tcti:
            raise errors.CoreStartError("the tpm2 sealer needs a TCTI (e.g. device:/dev/tpmrm0)")
        self.tcti = tcti

    def __repr__(self) -> str:
        return f"Tpm2Sealer(tcti={self.tcti!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a sealer cannot be pickled")

    def seal(self, data: bytes) -> bytes:
        head = base.header(self.name)
        kek = os.urandom(KEK_SIZE)
        sealed_object: tuple[bytes, bytes] = self._run("seal the domain key", lambda ctx, p: _create(ctx, p, kek))
        public, private = sealed_object
        nonce = os.urandom(NONCE_SIZE)
        prefix = bytes([FORMAT]) + _LEN.pack(len(public)) + public + _LEN.pack(len(private)) + private + nonce
        return head + prefix + AESGCM(kek).encrypt(nonce, data, head + prefix)

    def unseal(self, sealed: bytes) -> bytes:
        head, body = base.split(self.name, sealed)
        try:
            if body[0] != FORMAT:
                raise errors.CoreStartError(f"cannot unseal the domain key: unknown tpm2 sealed format {body[0]}")
            offset = 1
            (p_len,) = _LEN.unpack_from(body, offset)
            public = body[offset + 2 : offset + 2 + p_len]
            offset += 2 + p_len
            (q_len,) = _LEN.unpack_from(body, offset)
            private = body[offset + 2 : offset + 2 + q_len]
            offset += 2 + q_len
        except (IndexError, struct.error):
            raise errors.CoreStartError("cannot unseal the domain key: the sealed file is truncated") from None
        nonce = body[offset : offset + NONCE_SIZE]
        offset += NONCE_SIZE
        if len(public) != p_len or len(private) != q_len or len(body) < offset + TAG_SIZE:
            raise errors.CoreStartError("cannot unseal the domain key: the sealed file is truncated")
        kek: bytes = self._run("unseal the domain key", lambda ctx, parent: _unseal(ctx, parent, public, private))
        try:
            return AESGCM(kek).decrypt(nonce, body[offset:], head + body[:offset])
        except (InvalidTag, ValueError):
            raise errors.CoreStartError("cannot unseal the domain key: the sealed file is damaged") from None

    def _run(self, what: str, fn: Any) -> Any:
        from tpm2_pytss import ESAPI  # type: ignore[import-untyped]
        from tpm2_pytss.constants import ESYS_TR, TPMA_OBJECT  # type: ignore[import-untyped]
        from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPMT_PUBLIC  # type: ignore[import-untyped]

        try:
            ctx = ESAPI(self.tcti)
        except Exception as exc:
            raise errors.CoreStartError(f"cannot reach the TPM at {self.tcti} ({type(exc).__name__})") from None
        try:
            template = TPM2B_PUBLIC(
                TPMT_PUBLIC.parse(PRIMARY_TEMPLATE, objectAttributes=TPMA_OBJECT.DEFAULT_TPM2_TOOLS_CREATEPRIMARY_ATTRS)
            )
            try:
                parent, *_ = ctx.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.OWNER)
            except Exception as exc:
                raise errors.CoreStartError(
                    f"the TPM at {self.tcti} could not make its storage key ({type(exc).__name__})"
                ) from None
            try:
                return fn(ctx, parent)
            except errors.EhsmError:
                raise
            except Exception as exc:
                hint = ": it is not the TPM (or the TPM state) that sealed it" if what.startswith("unseal") else ""
                raise errors.CoreStartError(
                    f"the TPM at {self.tcti} could not {what}{hint} ({type(exc).__name__}: {exc})"
                ) from None
            finally:
                ctx.flush_context(parent)
        finally:
            ctx.close()


def _create(ctx: Any, parent: Any, kek: bytes) -> tuple[bytes, bytes]:
    from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT
    from tpm2_pytss.types import (
        TPM2B_PUBLIC,
        TPM2B_SENSITIVE_CREATE,
        TPM2B_SENSITIVE_DATA,
        TPMS_SENSITIVE_CREATE,
        TPMT_PUBLIC,
    )

    attrs = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.USERWITHAUTH
    public = TPMT_PUBLIC(type=TPM2_ALG.KEYEDHASH, nameAlg=TPM2_ALG.SHA256, objectAttributes=attrs)
    public.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG.NULL
    sensitive = TPM2B_SENSITIVE_CREATE(TPMS_SENSITIVE_CREATE(data=TPM2B_SENSITIVE_DATA(kek)))
    private, out_public, *_ = ctx.create(parent, sensitive, TPM2B_PUBLIC(public))
    return bytes(out_public.marshal()), bytes(private.marshal())


def _unseal(ctx: Any, parent: Any, public: bytes, private: bytes) -> bytes:
    from tpm2_pytss.types import TPM2B_PRIVATE, TPM2B_PUBLIC

    pub, used_pub = TPM2B_PUBLIC.unmarshal(public)
    priv, used_priv = TPM2B_PRIVATE.unmarshal(private)
    if used_pub != len(public) or used_priv != len(private):
        raise errors.CoreStartError("cannot unseal the domain key: the sealed file is damaged")
    handle = ctx.load(parent, priv, pub)
    try:
        kek = bytes(ctx.unseal(handle))
    finally:
        ctx.flush_context(handle)
    if len(kek) != KEK_SIZE:
        raise errors.CoreStartError("cannot unseal the domain key: the TPM object holds no key of the right size")
    return kek
