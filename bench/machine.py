"""What the harness runs on (cores, memory, versions) and what a process used (/proc: CPU time, peak RSS)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15 of stat(5))


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all cores; idle and iowait excluded), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def status_kib(pid: int, name: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM: peak resident set, VmRSS: resident now); 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return 0.0


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command_output(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr).strip() else ""


def uvicorn_stack() -> dict[str, str]:
    """What uvicorn's "auto" settings pick here, for the server and the ceiling alike."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return {"http": http, "loop": loop}


def git_revision(root: Path) -> str:
    rev = _command_output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}"


def describe(root: Path, pg_version: str) -> dict[str, Any]:
    import ehsm_kms

    wrk = _command_output(["wrk", "-v"])
    code = Path(ehsm_kms.__file__).resolve().parent
    return {
        "code_path": str(code),
        "code_is_checkout": code.is_relative_to(root),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "git": git_revision(root),
        "versions": {
            "python": platform.python_version(),
            "uvicorn": _version("uvicorn"),
            "uvicorn_http": uvicorn_stack()["http"],
            "uvicorn_loop": uvicorn_stack()["loop"],
            "orjson": _version("orjson"),
            "msgspec": _version("msgspec"),
            "cryptography": _version("cryptography"),
            "sqlite": sqlite3.sqlite_version,
            "psycopg": _version("psycopg"),
            "postgresql": pg_version,
            "wrk": wrk.split(" Copyright")[0],
            "moto": _version("moto"),
            "werkzeug": _version("werkzeug"),
        },
        "python_executable": sys.executable,
    }
