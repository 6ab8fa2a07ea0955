"""One KMS node's use-case context: the store, the core, the clock, and the short-lived record caches.

The request path of every authenticated action is the same: find the app, find the keys the payload names, make
*one* call to the core (which checks the signature before it uses a key), then write the replay record (for an
action that changes nothing, together with the request's audit record: :meth:`Node.record_replay`). A replay is
refused on every node because the record lives in the store (DESIGN invariant 6), and it is written only for
requests whose signature the core verified.

Caches: app and key records are cached for ``key_cache_ttl_ms`` (1 s by default). A node that disables, deletes or
changes a key drops its own entry at once; other nodes see the change within the TTL. That bound is documented in
docs/operations.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ehsm_kms import errors
from ehsm_kms.core import ciphertext as ct_format
from ehsm_kms.core.protocol import ALIAS_PREFIX, AppCredential, Call, KeyRef, SignedRequest
from ehsm_kms.core.proxy import Core
from ehsm_kms.core.specs import LIMITS, KeySpec, KeyUsage, Origin
from ehsm_kms.service.audit import defer_replay, note_key
from ehsm_kms.storage.base import ReplayEntry, Store
from ehsm_kms.storage.records import KEY_PENDING_DELETION, AppRecord, KeyRecord, KeyVersionRecord
from ehsm_kms.wire.request import js_string_to_number

_AUTH_ERRORS = (errors.SignError, errors.ApiKeyUnavailable)
_T = TypeVar("_T")


class _TtlCache:
    def __init__(self, ttl_ms: int, clock_ms: Callable[[], int], size: int = 100_000) -> None:
        self._ttl = ttl_ms
        self._clock = clock_ms
        self._size = size
        self._data: dict[str, tuple[int, Any]] = {}

    def get(self, key: str) -> Any:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            self._data.pop(key, None)
            return None
        return hit[1]

    def put(self, key: str, value: Any) -> None:
        if self._ttl <= 0:
            return
        if len(self._data) >= self._size:
            self._data.clear()
        self._data[key] = (self._clock() + self._ttl, value)

    def drop(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


@dataclass(frozen=True, slots=True)
class LoadedKey:
    record: KeyRecord
    version: KeyVersionRecord

    def ref(self) -> KeyRef:
        r = self.record
        return KeyRef(
            keyid=r.keyid,
            appid=r.appid,
            keyspec=int(KeySpec[r.keyspec]),
            usage=int(KeyUsage[r.usage]),
            origin=int(Origin[r.origin]),
            version=self.version.version,
            blob=self.version.blob,
            alias=r.alias,
        )


class Node:
    def __init__(
        self,
        store: Store,
        core: Core,
        *,
        key_cache_ttl_ms: int = 1000,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.core = core
        self.clock_ms: Callable[[], int] = clock_ms or (lambda: int(time.time() * 1000))
        self._apps = _TtlCache(key_cache_ttl_ms, self.clock_ms)
        self._keys = _TtlCache(key_cache_ttl_ms, self.clock_ms)
        self._aliases = _TtlCache(key_cache_ttl_ms, self.clock_ms)
        self.core_seconds = 0.0
        self.core_calls = 0
        self.store_seconds = 0.0
        self.store_calls = 0

    # ---------------------------------------------------------------- timing, for /metrics
    async def timed_store(self, op: Awaitable[_T]) -> _T:
        start = time.perf_counter()
        try:
            return await op
        finally:
            self.store_seconds += time.perf_counter() - start
            self.store_calls += 1

    async def _timed_core(self, call: Call) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            return await self.core.call(call)
        finally:
            self.core_seconds += time.perf_counter() - start
            self.core_calls += 1

    # ---------------------------------------------------------------- apps
    async def app(self, appid: str) -> AppRecord:
        if "\x00" in appid:  # names no app; PostgreSQL text cannot hold NUL ("database error" otherwise)
            raise errors.UnknownApp()
        rec: AppRecord | None = self._apps.get(appid)
        if rec is None:
            rec = await self.timed_store(self.store.get_app(appid))
            if rec is None:
                raise errors.UnknownApp()
            self._apps.put(appid, rec)
        if rec.state != "active":
            raise errors.AppRevoked()
        return rec

    def forget_app(self, appid: str) -> None:
        self._apps.drop(appid)

    # ---------------------------------------------------------------- keys
    async def key(
        self,
        app: AppRecord,
        keyid: Any,
        version: int | None = None,
        *,
        manage: bool = False,
        named_version: bool = False,
    ) -> LoadedKey:
        """A key of this app (``keyid`` may be ``alias/<name>``), usable now; another app's key answers exactly
        like an unknown one. ``manage``: any state will do (DescribeKey, CancelKeyDeletion ...). ``version``: that
        version instead of the primary (read from a ciphertext, or ``named_version`` by the caller)."""
        if not isinstance(keyid, str) or "\x00" in keyid:  # NUL: as in app()
            raise errors.KeyNotFound()
        if keyid.startswith(ALIAS_PREFIX):
            keyid = await self.resolve_alias(app, keyid[len(ALIAS_PREFIX) :])
        loaded: LoadedKey | None = self._keys.get(keyid)
        if loaded is None:
            found = await self.timed_store(self.store.get_key(keyid))
            if found is None:
                raise errors.KeyNotFound()
            loaded = LoadedKey(*found)
            self._keys.put(keyid, loaded)
        rec = loaded.record
        if rec.appid != app.appid:
            raise errors.KeyNotFound()
        if not manage:
            if rec.state == KEY_PENDING_DELETION:
                raise errors.KeyPendingDeletion()
            if rec.state == 0:
                raise errors.KeyDisabled()
            if self.clock_ms() > rec.expire_ms:
                raise errors.KeyExpired()
        if version is not None and version != loaded.version.version:
            if 1 <= version < rec.min_decrypt_version:  # a version that exists, retired (0 never exists)
                raise errors.KeyVersionRetired()
            other = await self.timed_store(self.store.get_key_version(keyid, version))
            if other is None:
                raise errors.KeyVersionInvalid() if named_version else errors.DecryptionFailed()
            loaded = LoadedKey(rec, other)
        note_key(rec.keyid, loaded.version.version)
        return loaded

    async def resolve_alias(self, app: AppRecord, alias: str) -> str:
        """The keyid of the app's alias (cached like keys); an unknown alias answers like an unknown key."""
        cache_key = f"{app.appid}/{alias}"
        keyid: str | None = self._aliases.get(cache_key)
        if keyid is None:
            keyid = await self.timed_store(self.store.get_key_by_alias(app.appid, alias))
            if keyid is None:
                raise errors.KeyNotFound()
            self._aliases.put(cache_key, keyid)
        return keyid

    async def named_keyid(self, app: AppRecord, value: Any) -> Any:
        """The keyid a payload's ``keyid`` names: ``alias/<name>`` resolved (None for an unknown alias)."""
        if isinstance(value, str) and value.startswith(ALIAS_PREFIX):
            try:
                return await self.resolve_alias(app, value[len(ALIAS_PREFIX) :])
            except errors.KeyNotFound:
                return None
        return value

    def forget_alias(self, appid: str, alias: str) -> None:
        self._aliases.drop(f"{appid}/{alias}")

    def forget_key(self, keyid: str) -> None:
        self._keys.drop(keyid)

    @staticmethod
    def ciphertext_version(value: Any) -> int:
        """The key version our ciphertext names (the header is not secret); malformed -> DecryptionFailed."""
        if not isinstance(value, str):
            raise errors.DecryptionFailed()
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise errors.DecryptionFailed() from None
        return ct_format.key_version(data)

    # ---------------------------------------------------------------- the core
    @staticmethod
    def credential(app: AppRecord) -> AppCredential:
        return AppCredential(appid=app.appid, apikey_blob=app.apikey_blob)

    def replay_entry(self, req: SignedRequest) -> ReplayEntry:
        """The replay record of a signed request: its digest covers the whole signed request (so two different
        requests in one millisecond never collide), prefixed by the timestamp so the store's index stays ordered;
        it lives as long as the timestamp window could still accept the request."""
        try:
            ts = int(js_string_to_number(req.timestamp))
        except (ValueError, OverflowError):
            ts = self.clock_ms()
        material = "\x00".join((req.timestamp, repr(req.nonce), req.sign)).encode("utf-8", "surrogatepass")
        return ReplayEntry(
            appid=req.appid,
            digest=struct.pack(">q", max(ts, 0)) + hashlib.sha256(material).digest(),
            expires_ms=max(ts, self.clock_ms()) + LIMITS.timestamp_window_ms + 1000,
        )

    async def record_replay(self, req: SignedRequest) -> None:
        """The replay record, durable before the request goes on; for a request that changes nothing, it is
        handed to the request's outcome record instead, which commits both before the answer leaves (one commit
        per request, not two: :func:`ehsm_kms.service.audit.defer_replay`)."""
        entry = self.replay_entry(req)
        if defer_replay(entry):
            return
        if not await self.timed_store(self.store.record_request(entry, self.clock_ms())):
            raise errors.ReplayError()

    async def verify(self, req: SignedRequest, app: AppRecord) -> None:
        """Check the signature alone (actions that use no key), then write the replay record."""
        await self._timed_core(Call(op="verify_request", auth=req, app=self.credential(app)))
        await self.record_replay(req)

    async def call(
        self,
        op: str,
        req: SignedRequest,
        app: AppRecord,
        keys: Sequence[LoadedKey] = (),
        args: dict[str, Any] | None = None,
        *,
        record: bool = True,
    ) -> dict[str, Any]:
        """One core call on behalf of an app; the replay record follows once the core accepted the signature.

        With ``record=False`` the caller writes the replay record itself, in the same transaction as its write.
        """
        call = Call(op=op, auth=req, app=self.credential(app), keys=[k.ref() for k in keys], args=args or {})
        try:
            result = await self._timed_core(call)
        except _AUTH_ERRORS:
            raise
        except errors.EhsmError:
            await self.record_replay(req)
            raise
        if record:
            await self.record_replay(req)
        return result

    async def keyed(
        self,
        op: str,
        req: SignedRequest,
        fields: Sequence[str] = ("keyid",),
        *,
        version_field: str | None = None,
        key_version: int | None = None,
        args: dict[str, Any] | None = None,
        record: bool = True,
        payload: dict[str, Any] | None = None,
    ) -> tuple[AppRecord, list[LoadedKey], dict[str, Any]]:
        """Look up the keys the payload names and make the core call; on a lookup failure the signature is
        checked first, so an unsigned probe learns nothing about keys.

        ``payload`` is the normalised payload (spelling aliases resolved) used for the lookups; the core gets the
        request exactly as signed.
        """
        app = await self.app(req.appid)
        if payload is None:
            payload = req.payload or {}
        keys: list[LoadedKey] = []
        try:
            for i, field in enumerate(fields):
                version = None
                if i == 0 and version_field is not None:
                    version = self.ciphertext_version(payload.get(version_field))
                if i == 0 and key_version is not None:
                    version = key_version
                keys.append(await self.key(app, payload.get(field), version, named_version=key_version is not None))
        except errors.EhsmError:
            await self.verify(req, app)
            raise
        return app, keys, await self.call(op, req, app, keys, args, record=record)
