"""Sampling profiles of the server and core processes under load (py-spy), summarised as text.

py-spy samples a running process from outside (``--nonblocking``: it never pauses the process), so the server runs
unchanged. For each process it writes a flame graph (SVG) and collapsed stacks; the summary gives, per thread, how
busy it was and which functions the samples fall in (self and inclusive), and for the functions of the request path
how their time splits among the functions they call.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RATE_HZ = 100
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    role: str
    pid: int
    raw: Path
    svg: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def start(role: str, pid: int, out_dir: Path, stem: str) -> Recording:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed")
    rec = Recording(role, pid, out_dir / f"{stem}-{role}.txt", out_dir / f"{stem}-{role}.svg")
    base = [exe, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking", "--threads"]
    for fmt, path in (("raw", rec.raw), ("flamegraph", rec.svg)):
        log = (out_dir / f"{stem}-{role}-{fmt}.log").open("wb")
        rec.procs.append(
            subprocess.Popen([*base, "--format", fmt, "-o", str(path)], stdout=log, stderr=subprocess.STDOUT)
        )
    return rec


def stop(rec: Recording, timeout: float = 30.0) -> None:
    for proc in rec.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in rec.procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _strip_line(frame: str) -> str:
    m = _FRAME.match(frame)
    return f"{m.group('func')} ({m.group('file')})" if m else frame


# Frames that only carry the work of the frames below them (interpreter start-up, click, the event loop's run
# methods, the core's serve loop): a stack is cut after the last of these, so the shares below are of real work.
CUT_FRAMES = frozenset(
    {
        "BaseEventLoop._run_once (asyncio/base_events.py)",
        "Handle._run (asyncio/events.py)",
        "serve (ehsm_kms/core/child.py)",
        "Thread.run (threading.py)",
        "_worker (concurrent/futures/thread.py)",
    }
)
# Where a function's time goes, by the function it calls (for the request path of the server and the core).
SPLIT_FRAMES = (
    "Handle._run (asyncio/events.py)",
    "KmsApp._kms (ehsm_kms/server/app.py)",
    "KmsApp._post_action (ehsm_kms/server/app.py)",
    "Node.keyed (ehsm_kms/service/node.py)",
    "_respond (ehsm_kms/server/app.py)",
    "Enclave.handle (ehsm_kms/core/enclave.py)",
    "encrypt (ehsm_kms/core/ops_crypto.py)",
    "Enclave.authenticate (ehsm_kms/core/enclave.py)",
)
OWN_CODE = "(its own code)"
# Leaf frames in which a thread waits for input (py-spy can count a blocked read as active): reported apart.
WAIT_LEAVES = frozenset(
    {
        "SocketIO.readinto (socket.py)",
        "EpollSelector.select (selectors.py)",
        "_read_exact (ehsm_kms/core/child.py)",
    }
)


def _cut(funcs: list[str]) -> list[str]:
    for i in range(len(funcs) - 1, -1, -1):
        if funcs[i] in CUT_FRAMES:
            return funcs[i + 1 :] or [f"(in {funcs[i]})"]
    return funcs


def summarise(raw: Path, seconds: float, top: int = 20) -> dict[str, Any]:
    """Per thread: samples, busy share (samples over rate x seconds; ``waiting``: the part in :data:`WAIT_LEAVES`),
    top self and inclusive functions (stacks cut
    below the event loop / serve loop); and for the functions of :data:`SPLIT_FRAMES`, their time by callee."""
    if not raw.exists():
        return {"error": f"no profile written ({raw.name})"}
    self_time: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    splits: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\d+\): ", "", frames[0])
        funcs = [_strip_line(f) for f in frames[1:]]
        if not funcs:
            continue
        totals[thread] += count
        for frame in SPLIT_FRAMES:
            if frame in funcs:
                i = len(funcs) - 1 - funcs[::-1].index(frame)
                splits[frame][funcs[i + 1] if i + 1 < len(funcs) else OWN_CODE] += count
        work = _cut(funcs)
        if work[-1] in WAIT_LEAVES:
            waiting[thread] += count
        self_time[thread][work[-1]] += count
        for func in set(work):
            inclusive[thread][func] += count
    expected = max(RATE_HZ * seconds, 1.0)
    out: dict[str, Any] = {"seconds": round(seconds, 2), "rate_hz": RATE_HZ, "threads": {}, "splits": {}}
    for thread, total in totals.most_common():
        out["threads"][thread] = {
            "samples": total,
            "busy": round(min(total / expected, 1.0), 3),
            "waiting": round(min(waiting[thread] / expected, 1.0), 3),
            "self": [(f, n, round(n / total, 3)) for f, n in self_time[thread].most_common(top)],
            "inclusive": [(f, n, round(n / total, 3)) for f, n in inclusive[thread].most_common(top)],
        }
    for frame, counter in splits.items():
        total = sum(counter.values())
        out["splits"][frame] = {
            "samples": total,
            "callees": [(f, n, round(n / total, 3)) for f, n in counter.most_common(top)],
        }
    return out
