"""Holding a ring in memory and keeping it fresh: shared by the dkeyserver worker and the dkeycache.

:class:`RingHolder` keeps the newest ring seen (a fetched ring whose current version is older than the one held
is not taken: a stale worker must not roll a cache back). :class:`Refresher` fetches from the given servers in
order, every ``interval`` seconds; while none answers it retries with bounded exponential backoff and jitter,
and the holder keeps serving what it has, so a dkeyserver outage stops nothing that already runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ehsm_kms import errors
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.provisioning.dkprotocol import Endpoint, fetch_remote


class RingHolder:
    def __init__(self, ring: DomainKeyRing | None = None) -> None:
        self._ring = ring
        self._lock = threading.Lock()

    @property
    def ring(self) -> DomainKeyRing | None:
        return self._ring

    def offer(self, ring: DomainKeyRing) -> bool:
        """Take ``ring`` if it is at least as new as the held one; whether it was taken."""
        with self._lock:
            held = self._ring
            if held is not None and ring.current_version < held.current_version:
                return False
            self._ring = ring
            return True

    def replace(self, ring: DomainKeyRing) -> None:
        with self._lock:
            self._ring = ring


class Refresher:
    def __init__(
        self,
        servers: Sequence[Endpoint],
        ctx: ssl.SSLContext,
        *,
        role: str,
        provider: Any,
        holder: RingHolder,
        log: logging.Logger,
        interval: float = 300.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        timeout: float = 30.0,
        fetch: Callable[..., DomainKeyRing] = fetch_remote,
    ) -> None:
        if not servers:
            raise errors.ConfigError("no dkeyserver to fetch the domain key from")
        self.servers = list(servers)
        self.ctx = ctx
        self.role = role
        self.provider = provider
        self.holder = holder
        self.log = log
        self.interval = interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.timeout = timeout
        self._fetch = fetch
        self.fetched = asyncio.Event()

    def fetch_once(self) -> DomainKeyRing:
        """The ring from the first server that gives it; the last error if none does."""
        last: errors.EhsmError | None = None
        for endpoint in self.servers:
            try:
                return self._fetch(endpoint, self.ctx, role=self.role, provider=self.provider, timeout=self.timeout)
            except errors.EhsmError as exc:
                self.log.warning("fetching the domain key from %s failed: %s", endpoint, exc.message)
                last = exc
            except Exception as exc:  # a bug or a library's surprise must not stop the refreshing for good
                self.log.error("fetching the domain key from %s failed unexpectedly: %s", endpoint, type(exc).__name__)
                last = errors.InternalError(f"unexpected {type(exc).__name__}")
        raise last or errors.CoreUnavailable("no dkeyserver answered")

    def delay(self, failures: int) -> float:
        """Exponential backoff, bounded, with jitter; never longer than the refresh interval once a ring is held."""
        ceiling = min(self.backoff_max, self.backoff_initial * float(1 << min(failures - 1, 30)))
        if self.holder.ring is not None:
            ceiling = min(ceiling, self.interval)
        jitter: float = random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
        return ceiling * jitter

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                ring = await asyncio.to_thread(self.fetch_once)
            except errors.EhsmError:
                failures += 1
                wait = self.delay(failures)
                self.log.info("next domain-key fetch in %.1f s (attempt %d failed)", wait, failures)
                await asyncio.sleep(wait)
                continue
            failures = 0
            before = self.holder.ring
            if self.holder.offer(ring):
                if before is None or before.current_version != ring.current_version:
                    self.log.info("domain key held: version %d (%d versions)", ring.current_version, len(ring.versions))
            else:
                self.log.warning(
                    "a dkeyserver offered domain-key version %d, older than the held %d: kept the held one",
                    ring.current_version,
                    before.current_version if before else 0,
                )
            self.fetched.set()
            await asyncio.sleep(self.interval)


__all__ = ["Refresher", "RingHolder"]
