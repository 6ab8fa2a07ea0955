"""Small helpers shared by the core's operation modules."""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
from typing import TYPE_CHECKING, Any, TypeVar

from ehsm_kms import errors
from ehsm_kms.core import families
from ehsm_kms.core.specs import KeySpec

if TYPE_CHECKING:
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.protocol import KeyRef

_E = TypeVar("_E", bound=enum.IntEnum)


def b64decode(value: Any) -> bytes:
    """Strict base64 of a payload field; the wire layer validated it, the core does not trust that."""
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise errors.CryptoError()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise errors.CryptoError() from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def payload_enum(enum_cls: type[_E], payload: dict[str, Any], field: str) -> _E:
    """An enum given by its wire name in the signed payload; anything else is the enclave's generic error."""
    value = payload.get(field)
    member = enum_cls.__members__.get(value) if isinstance(value, str) else None
    if member is None:
        raise errors.CryptoError()
    return member


def enum_arg(enum_cls: type[_E], args: dict[str, Any], field: str) -> _E:
    """An enum the server passed by name or number."""
    value = args.get(field)
    if isinstance(value, str) and value in enum_cls.__members__:
        return enum_cls.__members__[value]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return enum_cls(value)
        except ValueError:
            pass
    raise errors.CryptoError()


def asymmetric_key(enc: Enclave, ref: KeyRef) -> Any:
    """The loaded private key of an RSA, EC or SM2 CMK, cached inside the core.

    The cache key covers the blob *and* every field it is bound to, so a row whose metadata was changed misses the
    cache and fails the unwrap, as it would without a cache.
    """
    bound = f"{ref.keyid}|{ref.appid}|{ref.keyspec}|{ref.usage}|{ref.origin}|{ref.version}|".encode()
    digest = hashlib.sha256(bound + ref.blob).digest()
    cached = enc.loaded.get(digest)
    if cached is not None:
        return cached
    material = enc.open_key(ref)
    key = families.load_asymmetric(KeySpec(ref.keyspec), material.reveal())
    enc.loaded.put(digest, key)
    return key
