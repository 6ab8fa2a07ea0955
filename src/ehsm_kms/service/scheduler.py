"""Background jobs that many nodes may run at once: due secret deletions, scheduled key deletions, rotations.

Every node runs the same jobs on a timer. A job must be safe to run on every node at the same moment: it claims
its work in the store atomically (``DELETE ... WHERE due <= now RETURNING``, a conditional ``UPDATE``, or
``FOR UPDATE SKIP LOCKED``), so each item is done once, and nothing is lost when a node was down when the item fell
due (the next run of any node picks it up). Jobs take the time as an argument, so tests drive them with an
injected clock and no sleeping (:meth:`Scheduler.run_once`).

With ``audit_fail_closed`` (given to the scheduler by the server, from the node's settings) the jobs it runs write
each item's audit request record before they change anything for it, and leave the item for the next run when
that write fails (:func:`ehsm_kms.service.audit_jobs.job_ahead`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ehsm_kms import errors
from ehsm_kms.service import audit_jobs

if TYPE_CHECKING:
    from ehsm_kms.service.node import Node

log = logging.getLogger("ehsm_kms.scheduler")

Job = Callable[["Node", int], Awaitable[int]]  # (node, now_ms) -> number of items done

JOBS: dict[str, Job] = {}


def job(name: str) -> Callable[[Job], Job]:
    """Register a job that every node's scheduler runs."""

    def register(fn: Job) -> Job:
        if name in JOBS:
            raise RuntimeError(f"job {name!r} registered twice")
        JOBS[name] = fn
        return fn

    return register


class Scheduler:
    def __init__(self, node: Node, *, interval_s: float = 5.0, audit_fail_closed: bool = False) -> None:
        self.node = node
        self.interval_s = interval_s
        self.audit_fail_closed = audit_fail_closed
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    async def run_once(self, now_ms: int | None = None) -> dict[str, int]:
        """Run every job once at ``now_ms`` (the node's clock by default); return what each did."""
        now = self.node.clock_ms() if now_ms is None else now_ms
        done: dict[str, int] = {}
        with audit_jobs.jobs_fail_closed(self.audit_fail_closed):
            for name, fn in sorted(JOBS.items()):
                try:
                    done[name] = await fn(self.node, now)
                except errors.EhsmError as exc:  # the store is down, the core restarting: try again next time
                    log.warning("job %s failed: %s", name, exc.message)
                    done[name] = 0
                except Exception:
                    log.exception("job %s failed", name)
                    done[name] = 0
                if done[name]:
                    log.info("job %s did %d item(s)", name, done[name])
        self.runs += 1
        return done

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="ehsm-scheduler")

    async def _loop(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
