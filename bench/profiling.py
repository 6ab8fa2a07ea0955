"""Sampling profiles of the server and core processes under load (py-spy), summarised as text.

py-spy samples a running process from outside (``--nonblocking``: it never pauses the process), so the server runs
unchanged. For each process it writes a flame graph (SVG) and collapsed stacks; the summary gives, per thread, how
busy it was and which functions the samples fall in (self and inclusive), and the split of the request handler's time
among the functions it calls.
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
HANDLER_FRAME = "KmsApp._kms (ehsm_kms/server/app.py)"


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


def summarise(raw: Path, seconds: float, top: int = 20) -> dict[str, Any]:
    """Per thread: samples, busy share (samples over rate x seconds), top self and inclusive functions; and the
    split of the request handler's samples among its callees."""
    threads: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    handler_split: Counter[str] = Counter()
    handler_total = 0
    if not raw.exists():
        return {"error": f"no profile written ({raw.name})"}
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
        threads[thread][funcs[-1]] += count
        for func in set(funcs):
            inclusive[thread][func] += count
        if HANDLER_FRAME in funcs:
            handler_total += count
            i = funcs.index(HANDLER_FRAME)
            callee = funcs[i + 1] if i + 1 < len(funcs) else "(the handler's own code)"
            handler_split[callee] += count
    expected = max(RATE_HZ * seconds, 1.0)
    out: dict[str, Any] = {"seconds": round(seconds, 2), "rate_hz": RATE_HZ, "threads": {}}
    for thread, total in totals.most_common():
        out["threads"][thread] = {
            "samples": total,
            "busy": round(min(total / expected, 1.0), 3),
            "self": [(f, n, round(n / total, 3)) for f, n in threads[thread].most_common(top)],
            "inclusive": [(f, n, round(n / total, 3)) for f, n in inclusive[thread].most_common(top)],
        }
    if handler_total:
        out["handler"] = {
            "samples": handler_total,
            "split": [(f, n, round(n / handler_total, 3)) for f, n in handler_split.most_common(top)],
        }
    return out
