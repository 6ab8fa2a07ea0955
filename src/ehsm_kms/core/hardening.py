"""Process protections for every process that holds the domain key (the core child, dkeyserver, dkeycache).

Not dumpable (``PR_SET_DUMPABLE`` 0: other processes of the same user cannot ptrace it or read its
``/proc/<pid>/mem``), no core dumps (``RLIMIT_CORE`` 0: a crash does not write the DK to disk), and memory locked
(``mlockall``) where the system allows it, so the DK is never written to swap. A protection the system refuses is
reported, not fatal: the caller logs it (a container without ``CAP_IPC_LOCK`` and a low ``RLIMIT_MEMLOCK`` cannot
lock memory, and should still run).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import signal

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
MCL_CURRENT = 1
MCL_FUTURE = 2


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def harden(*, lock_memory: bool = True, die_with_parent: bool = False) -> dict[str, object]:
    """Apply the protections; return what holds: ``dumpable`` (0 when protected), ``core_limit``, ``mlock``."""
    libc = _libc()
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if die_with_parent:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    locked = bool(lock_memory) and libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0
    return {
        "dumpable": int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)),
        "core_limit": resource.getrlimit(resource.RLIMIT_CORE)[1],
        "mlock": locked,
    }


def warnings_for(report: dict[str, object]) -> list[str]:
    """What to log about a :func:`harden` report (empty when every protection holds)."""
    out = []
    if report.get("dumpable") != 0:
        out.append("process protection not available: prctl(PR_SET_DUMPABLE)")
    if report.get("core_limit") != 0:
        out.append("process protection not available: RLIMIT_CORE")
    if not report.get("mlock"):
        out.append("process protection not available: mlockall (memory may be swapped)")
    return out


__all__ = ["harden", "warnings_for"]
