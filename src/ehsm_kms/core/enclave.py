"""The Enclave facade: the one surface the rest of the project calls (the "ECALL" table).

Every operation arrives as a :class:`~ehsm_kms.core.protocol.Call` and leaves as a
:class:`~ehsm_kms.core.protocol.Reply`; the same object serves in-process and behind the isolated core's channel.

The core authorizes, it does not obey (DESIGN invariant 2): for every operation done for an app it

1. opens the app's APIKey blob (bound to the appid the request names) and checks the request's HMAC in constant time;
2. checks that every key it is given belongs to that appid and is the key the signed payload names, before it
   unwraps it (the unwrap itself fails if the row's metadata was changed: the blob is bound to it);
3. reads the caller's inputs (plaintext, aad, padding ...) from the signed payload, never from the outer layer.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ehsm_kms import errors
from ehsm_kms.core import keyblob, selftest
from ehsm_kms.core.coreconfig import WAITING_FOR_RING
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.enclave_util import b64decode, b64encode
from ehsm_kms.core.protocol import ALIAS_PREFIX, AppCredential, Call, KeyRef, Reply, SignedRequest
from ehsm_kms.core.registry import HANDLERS
from ehsm_kms.core.secret import SecretBytes
from ehsm_kms.core.specs import KeySpec, KeyUsage, Origin
from ehsm_kms.wire import sign as wire_sign

if TYPE_CHECKING:
    from ehsm_kms.core.ops_ring import RingKeeper

log = logging.getLogger("ehsm_kms.core")

_CACHE_SIZE = 4096

APIKEY_SPEC = KeySpec.EH_HMAC
APIKEY_USAGE = KeyUsage.EH_KEYUSAGE_SIGN_VERIFY
APIKEY_ORIGIN = Origin.EH_INTERNAL_KEY


def apikey_binding(appid: str, version: int = 1) -> keyblob.Binding:
    return keyblob.Binding(
        purpose="apikey",
        keyid=appid,
        appid=appid,
        keyspec=int(APIKEY_SPEC),
        usage=int(APIKEY_USAGE),
        origin=int(APIKEY_ORIGIN),
        key_version=version,
    )


def cmk_binding(ref: KeyRef) -> keyblob.Binding:
    return keyblob.Binding(
        purpose="cmk",
        keyid=ref.keyid,
        appid=ref.appid,
        keyspec=ref.keyspec,
        usage=ref.usage,
        origin=ref.origin,
        key_version=ref.version,
    )


def _names(value: Any, ref: KeyRef) -> bool:
    """Whether a payload's key field names ``ref``: its keyid, or ``alias/<alias>`` for the alias its row has.

    The alias mapping comes from the store, like the rest of the row; the blob's binding to the app (checked when
    the key is opened) is what keeps an app to its own keys, so an alias can only ever lead to one of them.
    """
    if value == ref.keyid:
        return True
    return bool(ref.alias) and isinstance(value, str) and value == ALIAS_PREFIX + ref.alias


class _Lru:
    """A small LRU map for values derived from blobs (opened APIKeys, loaded private keys). Core memory only."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[bytes, Any] = OrderedDict()

    def get(self, key: bytes) -> Any:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: bytes, value: Any) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


class Enclave:
    """The core itself. Not thread-safe: the isolated core runs it on one thread; in-process callers serialize.

    ``ring`` may be None (cluster mode, before the dkeycache answered): every operation but the ring's own then
    fails with CoreUnavailable until ``keeper`` finds a ring (:mod:`ehsm_kms.core.ops_ring`).
    """

    def __init__(
        self,
        ring: DomainKeyRing | None,
        *,
        clock_ms: Callable[[], int] | None = None,
        run_self_tests: bool = True,
        keeper: RingKeeper | None = None,
    ) -> None:
        self._ring = ring
        self.keeper = keeper
        self.clock_ms: Callable[[], int] = clock_ms or (lambda: int(time.time() * 1000))
        self._apikeys = _Lru(_CACHE_SIZE)
        self.loaded = _Lru(_CACHE_SIZE)
        self.self_test_report: list[str] = []
        if run_self_tests:
            self.self_test_report = selftest.run_all()

    @property
    def ring(self) -> DomainKeyRing:
        ring = self._ring
        if ring is None:
            raise errors.CoreUnavailable(WAITING_FOR_RING)
        return ring

    @property
    def ring_or_none(self) -> DomainKeyRing | None:
        return self._ring

    def set_ring(self, ring: DomainKeyRing) -> None:
        """Adopt a ring that extends the one held (checked by the caller); cached opened keys stay valid, since
        every version they were opened under keeps its key."""
        self._ring = ring

    def __repr__(self) -> str:
        ring = self._ring
        return f"Enclave(dk_version={ring.current_version if ring is not None else 0})"

    def __reduce__(self) -> Any:
        raise TypeError("the Enclave cannot be pickled")

    # ------------------------------------------------------------------ dispatch
    def handle(self, call: Call) -> Reply:
        handler = HANDLERS.get(call.op)
        try:
            if handler is None:
                raise errors.CryptoError("action not find.")
            if self.keeper is not None:
                self.keeper.ensure(self, call_blobs(call))
            return Reply(result=handler(self, call))
        except errors.EhsmError as exc:
            return Reply(error=type(exc).__name__, message=exc.message)
        except Exception as exc:
            log.error("core operation %s failed: %s", call.op, type(exc).__name__)
            return Reply(error="CryptoError", message=errors.CryptoError.default_message)

    # ------------------------------------------------------------------ authorization
    def apikey(self, app: AppCredential) -> SecretBytes:
        cached = self._apikeys.get(app.apikey_blob)
        if cached is not None:
            cached_appid, key = cached
            if cached_appid == app.appid:
                return key  # type: ignore[no-any-return]
        try:
            key = keyblob.unwrap(self.ring, apikey_binding(app.appid), app.apikey_blob)
        except errors.EhsmError:
            raise errors.ApiKeyUnavailable() from None
        self._apikeys.put(app.apikey_blob, (app.appid, key))
        return key

    def authenticate(self, call: Call) -> SignedRequest:
        """Check the caller's signature with its APIKey; return the signed request."""
        auth, app = call.auth, call.app
        if auth is None or app is None:
            raise errors.SignError()
        if app.appid != auth.appid:
            raise errors.SignError()
        key = self.apikey(app)
        message = wire_sign.sign_string(auth.appid, auth.timestamp, auth.payload, auth.nonce)
        expected = wire_sign.signature(key.reveal(), message)
        if not wire_sign.signature_matches(expected, auth.sign):
            raise errors.SignError()
        return auth

    def payload(self, call: Call) -> dict[str, Any]:
        auth = self.authenticate(call)
        return auth.payload if isinstance(auth.payload, dict) else {}

    def key_ref(self, call: Call, payload: dict[str, Any], index: int = 0, field: str = "keyid") -> KeyRef:
        """The key the signed payload names, checked to belong to the caller."""
        if len(call.keys) <= index:
            raise errors.KeyNotFound()
        ref = call.keys[index]
        auth = call.auth
        if auth is None or ref.appid != auth.appid or not _names(payload.get(field), ref):
            raise errors.KeyNotFound()  # another app's key answers exactly like an unknown one
        return ref

    def open_key(self, ref: KeyRef) -> SecretBytes:
        if not ref.blob:
            # An external key whose material was never imported.
            raise errors.CryptoError()
        return keyblob.unwrap(self.ring, cmk_binding(ref), ref.blob)

    def wrap_cmk(self, ref: KeyRef, material: bytes) -> bytes:
        return keyblob.wrap(self.ring, cmk_binding(ref), material)


# Import for the side effect of registering the handlers.
import ehsm_kms.core.ops_quotes  # noqa: E402, F401
from ehsm_kms.core import ops_admin, ops_crypto, ops_keys, ops_secrets, ops_versions  # noqa: E402, F401
from ehsm_kms.core.ops_ring import call_blobs  # noqa: E402

__all__ = ["Enclave", "apikey_binding", "b64decode", "b64encode", "cmk_binding", "ops_crypto", "ops_keys"]
