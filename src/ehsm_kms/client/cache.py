"""A data-key cache for envelope encryption, bounded like the AWS Encryption SDK's caching materials manager.

Without a cache every message costs one GenerateDataKey (encryption) or one Decrypt (decryption). With one, a data
key is reused for several messages until any bound is reached:

* ``max_age`` seconds since the key was made (required: there is no safe default for every application);
* ``max_messages`` messages sealed with it;
* ``max_bytes`` plaintext bytes sealed with it. A message is checked against the bound *before* it is sealed,
  so its length must be known: streams of unknown length never use the cache (the file helpers know the length).

Entries are separate per server, appid, CMK and associated data, so a key made for one app or context is never
handed to another. Decryption reuses unwrapped data keys for ``max_age`` seconds. At most ``capacity`` entries
of each kind are kept (the oldest go first). The cache holds plaintext data keys in this process's memory: use one
only where that is acceptable, and :meth:`DataKeyCache.clear` it when done.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from ehsm_kms.client.results import DataKey

MAX_MESSAGES = 2**32
MAX_BYTES = 2**62


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    encrypt_entries: int
    decrypt_entries: int


@dataclass(slots=True)
class _Entry:
    key: DataKey
    made: float
    messages: int
    size: int


class DataKeyCache:
    """Thread-safe; share one between the calls that may share data keys."""

    def __init__(
        self,
        *,
        max_age: float,
        max_messages: int = MAX_MESSAGES,
        max_bytes: int = MAX_BYTES,
        capacity: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age <= 0 or max_messages < 1 or max_bytes < 1 or capacity < 1:
            raise ValueError("max_age, max_messages, max_bytes and capacity must be positive")
        self.max_age = max_age
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._encrypt: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._decrypt: OrderedDict[Hashable, tuple[bytes, float]] = OrderedDict()
        self._hits = 0
        self._misses = 0

    def __repr__(self) -> str:
        return f"DataKeyCache(max_age={self.max_age}, max_messages={self.max_messages}, max_bytes={self.max_bytes})"

    def __reduce__(self) -> str:
        raise TypeError("DataKeyCache holds plaintext data keys and cannot be pickled")

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._encrypt), len(self._decrypt))

    def clear(self) -> None:
        with self._lock:
            self._encrypt.clear()
            self._decrypt.clear()

    # ---------------------------------------------------------------- encryption
    def encryption_key(self, partition: Hashable, size: int, fetch: Callable[[], DataKey]) -> DataKey:
        """A data key for a message of ``size`` plaintext bytes: a cached one within its bounds, or ``fetch()``."""
        if size > self.max_bytes:
            with self._lock:
                self._misses += 1
            return fetch()
        now = self._clock()
        with self._lock:
            entry = self._encrypt.get(partition)
            if entry is not None:
                if (
                    now - entry.made < self.max_age
                    and entry.messages < self.max_messages
                    and entry.size + size <= self.max_bytes
                ):
                    entry.messages += 1
                    entry.size += size
                    self._hits += 1
                    return entry.key
                del self._encrypt[partition]
            self._misses += 1
        key = fetch()
        with self._lock:
            self._encrypt[partition] = _Entry(key, self._clock(), 1, size)
            self._encrypt.move_to_end(partition)
            while len(self._encrypt) > self.capacity:
                self._encrypt.popitem(last=False)
        return key

    def account(self, partition: Hashable, key: DataKey, extra: int) -> None:
        """Add ``extra`` bytes to the entry of ``key`` (a message turned out longer than announced)."""
        with self._lock:
            entry = self._encrypt.get(partition)
            if entry is not None and entry.key is key:
                entry.size += extra
                if entry.size > self.max_bytes:
                    del self._encrypt[partition]

    # ---------------------------------------------------------------- decryption
    def decryption_key(self, partition: Hashable, fetch: Callable[[], bytes]) -> bytes:
        """The plaintext data key for ``partition`` (which includes the wrapped key): cached, or ``fetch()``."""
        now = self._clock()
        with self._lock:
            hit = self._decrypt.get(partition)
            if hit is not None:
                if now - hit[1] < self.max_age:
                    self._hits += 1
                    return hit[0]
                del self._decrypt[partition]
            self._misses += 1
        key = fetch()
        with self._lock:
            self._decrypt[partition] = (key, self._clock())
            while len(self._decrypt) > self.capacity:
                self._decrypt.popitem(last=False)
        return key
