"""The messages that cross the boundary of the core (the "ECALL" surface).

The outer layers (service, server) never hold plaintext keys, the domain key or APIKeys: they hand the core opaque
blobs together with the caller's *signed request*, and the core checks the signature with the APIKey it unwraps
itself before it uses any key (DESIGN invariant 2). Inputs that the caller chose (plaintext, aad, padding, ...)
are read by the core from the signed payload, so a compromised outer layer cannot change them. Values that the
server chooses (a new keyid, the current time, a key version) travel in ``args``.

The same structs are used in-process and, encoded as msgpack, over the isolated core's channel. msgpack is used
because decoding it cannot run code (unlike pickle) and it carries bytes natively.
"""

from __future__ import annotations

from typing import Any

import msgspec


class SignedRequest(msgspec.Struct, frozen=True):
    """The four signed fields and the signature, exactly as the client sent them."""

    appid: str
    timestamp: str
    sign: str
    payload: Any = None  # an object as a rule; JavaScript let arrays through, and they are signed as such
    nonce: Any = None


class AppCredential(msgspec.Struct, frozen=True):
    """An app's APIKey as a blob bound to its appid; only the core can open it."""

    appid: str
    apikey_blob: bytes


ALIAS_PREFIX = "alias/"  # a payload's keyid may name a key by its alias: "alias/<name>"


class KeyRef(msgspec.Struct, frozen=True):
    """One version of a CMK as the store holds it: metadata plus the DK-wrapped blob.

    ``keyspec``, ``usage`` and ``origin`` are the wire numbers; the core checks them against what the blob is bound
    to, so a changed row fails instead of being believed.
    """

    keyid: str
    appid: str
    keyspec: int
    usage: int
    origin: int
    version: int
    blob: bytes
    alias: str = ""  # the alias the store has for the key: a payload may name the key as "alias/<alias>"


class Call(msgspec.Struct, frozen=True):
    """One operation for the core.

    ``op`` names an operation of :class:`ehsm_kms.core.enclave.Enclave`; ``auth`` is required for every operation
    done on behalf of an app. ``keys`` are the key versions the operation may use, ``args`` the server's values.
    """

    op: str
    auth: SignedRequest | None = None
    app: AppCredential | None = None
    keys: list[KeyRef] = msgspec.field(default_factory=list)
    args: dict[str, Any] = msgspec.field(default_factory=dict)


class Reply(msgspec.Struct, frozen=True):
    """The core's answer: a result, or the name of an error class of :mod:`ehsm_kms.errors` and its message."""

    result: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None
    message: str | None = None


_encoder = msgspec.msgpack.Encoder()
_call_decoder = msgspec.msgpack.Decoder(Call)
_reply_decoder = msgspec.msgpack.Decoder(Reply)


def encode(msg: Call | Reply) -> bytes:
    return _encoder.encode(msg)


def decode_call(data: bytes) -> Call:
    return _call_decoder.decode(data)


def decode_reply(data: bytes) -> Reply:
    return _reply_decoder.decode(data)
