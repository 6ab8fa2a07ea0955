"""One wrk run over a pool of pre-made requests (bench/replay.lua), and what it measured."""

from __future__ import annotations

import math
import os
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

LUA = Path(__file__).resolve().with_name("replay.lua")
WRK_TIMEOUT_S = 30  # a request slower than this counts as a timeout (and the run as invalid)


@dataclass
class RunResult:
    connections: int
    requests: int
    answered: int
    good: int
    bad: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    socket_errors: int
    timeouts: int
    valid: bool
    note: str = ""
    wrk_cpu_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds spent by each server process in the run
    wall_s: float = 0.0
    other_cpu_share: float = 0.0  # share of the machine's CPU used by processes outside the run (noise)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(
    url: str,
    pool: Path,
    count: int,
    connections: int,
    *,
    check: str,
    headers: Sequence[str] = (),
    max_seconds: float,
) -> RunResult:
    """Replay ``count`` requests from ``pool`` on ``connections`` connections; ``check`` is "code" or "status"."""
    duration = max(2, math.ceil(max_seconds))
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", f"--timeout={WRK_TIMEOUT_S}s", "--latency"]
    cmd += ["-s", str(LUA)]
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    env = dict(os.environ, BENCH_REQUESTS=str(pool), BENCH_METHOD="POST", BENCH_CHECK=check)
    before = _children_cpu()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60, check=False)
    wrk_cpu = _children_cpu() - before
    return parse(proc.stdout, proc.stderr, proc.returncode, count, connections, wrk_cpu)


def parse(stdout: str, stderr: str, returncode: int, count: int, connections: int, wrk_cpu: float) -> RunResult:
    data: dict[str, Any] | None = None
    first_error = ""
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            data = orjson.loads(line.removeprefix("BENCH_RESULT "))
        elif line.startswith("BENCH_FIRST_ERROR "):
            first_error = line.removeprefix("BENCH_FIRST_ERROR ")[:300]
    if data is None:
        note = f"wrk exited {returncode} without a result: {(stderr or stdout).strip()[-300:]}"
        return RunResult(connections, count, 0, 0, 0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, False, note, wrk_cpu)
    seconds = float(data["seconds"])
    answered = int(data["answered"])
    socket_errors = int(data["connect_errors"]) + int(data["read_errors"]) + int(data["write_errors"])
    timeouts = int(data["timeouts"])
    problems = []
    if int(data["total"]) != count:
        problems.append(f"pool had {data['total']} requests, expected {count}")
    if answered < count:
        problems.append(f"only {answered} of {count} answered")
    if int(data["bad"]):
        problems.append(f"{data['bad']} answers without code 200 (first: {first_error})")
    if socket_errors or timeouts:
        problems.append(f"{socket_errors} socket errors, {timeouts} timeouts")
    if seconds <= 0:
        problems.append("no run time measured")
        seconds = int(data["wrk_duration_us"]) / 1e6
    return RunResult(
        connections=connections,
        requests=count,
        answered=answered,
        good=int(data["good"]),
        bad=int(data["bad"]),
        seconds=round(seconds, 4),
        rps=round(int(data["good"]) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=float(data["p50_us"]) / 1000,
        p90_ms=float(data["p90_us"]) / 1000,
        p99_ms=float(data["p99_us"]) / 1000,
        p999_ms=float(data["p999_us"]) / 1000,
        mean_ms=round(float(data["mean_us"]) / 1000, 3),
        max_ms=float(data["max_us"]) / 1000,
        socket_errors=socket_errors,
        timeouts=timeouts,
        valid=not problems,
        note="; ".join(problems),
        wrk_cpu_s=round(wrk_cpu, 3),
    )
