"""Following a core's domain-key ring from outside the core: the proxy's side of cluster mode and DK rotation.

The ring itself never leaves the core; this only asks the core (``ring_refresh``, :mod:`ehsm_kms.core.ops_ring`) to
look at its source, and remembers the DK version it answered. Until the core holds a ring (cluster mode, before
the dkeycache has one) it asks with a bounded exponential backoff with jitter, forever until stopped; then every
``refresh_interval_s``. A core that was (re)started wakes it at once. No cryptography is imported here: the
proxy runs in the server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ehsm_kms import errors
from ehsm_kms.core.protocol import Call

log = logging.getLogger("ehsm_kms.core")

RING_OPS: Final = frozenset({"ring_refresh", "ring_status"})  # the core ops a core answers before it holds a ring
BACKOFF_FIRST_S: Final = 0.05
BACKOFF_MAX_S: Final = 5.0
_jitter = secrets.SystemRandom()


class RingFollower:
    """Gets a core its ring and keeps it current by calling the core's ``ring_refresh`` (module docstring)."""

    def __init__(
        self,
        raw_call: Callable[[Call], Awaitable[dict[str, Any]]],
        refresh_interval_s: float,
        *,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self._raw_call = raw_call
        self._interval = refresh_interval_s
        self._backoff_max = backoff_max_s
        self.dk_version = 0
        self.alive = False
        self.fetches = 0
        self._has_ring = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def note(self, dk_version: int, *, alive: bool = True) -> None:
        self.alive = alive
        self.dk_version = dk_version if alive else 0
        if self.dk_version:
            self._has_ring.set()
        else:
            self._has_ring.clear()
        self._wake.set()

    async def wait(self, timeout: float | None) -> bool:
        try:
            await asyncio.wait_for(self._has_ring.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="ehsm-ring-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sleep(self, seconds: float | None) -> None:
        """Sleep, but wake at once when the core was (re)started or its ring changed."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _refresh(self, reason: str) -> None:
        self.fetches += 1
        result = await self._raw_call(Call(op="ring_refresh", args={"reason": reason}))
        version = int(result.get("dk_version", 0))
        if version != self.dk_version:
            self.dk_version = version
            if version:
                self._has_ring.set()

    async def _follow(self) -> None:
        delay, waiting_since = BACKOFF_FIRST_S, 0.0
        while True:
            if not self.alive:
                await self._sleep(None)
                continue
            if not self.dk_version:
                waiting_since = waiting_since or time.monotonic()
                try:
                    await self._refresh("start")
                except errors.EhsmError as exc:
                    # Once, then about once a minute: a node may wait for the dkeyserver for a long time.
                    if delay == BACKOFF_FIRST_S or (delay >= self._backoff_max and self.fetches % 12 == 0):
                        log.warning(
                            "waiting for the domain key (%.0f s so far): %s",
                            time.monotonic() - waiting_since,
                            exc.message,
                        )
                if self.dk_version:
                    log.info("the core holds domain-key version %d", self.dk_version)
                    delay, waiting_since = BACKOFF_FIRST_S, 0.0
                    continue
                await self._sleep(delay * _jitter.uniform(0.5, 1.0))
                delay = min(delay * 2, self._backoff_max)
                continue
            await self._sleep(self._interval if self._interval > 0 else None)
            if self.alive and self.dk_version and self._interval > 0:
                try:
                    await self._refresh("periodic")
                except errors.EhsmError as exc:
                    log.warning("domain-key refresh failed (the core keeps its ring): %s", exc.message)


__all__ = ["BACKOFF_FIRST_S", "BACKOFF_MAX_S", "RING_OPS", "RingFollower"]
