"""The processes under test, each on a free loopback port: our server, the ceiling, the peer (moto).

Every wait is bounded; a process that does not come up stops the harness with the end of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import machine

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE_ENV = "EHSM_BENCH_PASSPHRASE"
PASSPHRASE = "benchmark passphrase, not a secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    cmd: list[str]
    log_path: Path
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, timeout: float = 90.0) -> Process:
        env = dict(os.environ, **self.env)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=2.0).status_code < 500:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def processes(self) -> dict[str, int]:
        """The server process and its children (the isolated core), by role.

        With ``workers`` > 1 the started process supervises the workers: it is the "supervisor", each worker a
        "server#i" and its core "core#i" (the harness adds the CPU of a role up, and keeps its largest RSS).
        """
        if self.workers == 1:
            found = {"server": self.pid}
            for i, child in enumerate(machine.children(self.pid)):
                found["core" if i == 0 else f"child{i}"] = child
            return found
        found = {"supervisor": self.pid}
        for i, worker in enumerate(machine.children(self.pid)):
            found["server" if i == 0 else f"server#{i}"] = worker
            for j, child in enumerate(machine.children(worker)):
                found[("core" if i == 0 else f"core#{i}") if j == 0 else f"child{i}.{j}"] = child
        return found

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None


def kms(
    data_dir: Path,
    store_url: str,
    core_mode: str,
    log_dir: Path,
    *,
    log_level: str = "info",
    tag: str = "kms",
    workers: int = 1,
) -> Process:
    """``ehsm-kms serve`` as a user starts it (single mode, passphrase sealer, open enrollment on loopback)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = free_port()
    cmd = [
        sys.executable, "-m", "ehsm_kms.cli.main", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(data_dir), "--store-url", store_url,
        "--core-mode", core_mode,
        "--sealer", "passphrase", "--sealer-secret", f"env:{PASSPHRASE_ENV}",
        "--enroll-mode", "open", "--log-level", log_level, "--workers", str(workers),
    ]  # fmt: skip
    return Process(tag, cmd, log_dir / f"{tag}.log", "/readyz", {PASSPHRASE_ENV: PASSPHRASE}, port, workers=workers)


def ceiling(log_dir: Path) -> Process:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.ceiling", "--port", str(port)]
    return Process("ceiling", cmd, log_dir / "ceiling.log", "/", {}, port)


def moto(log_dir: Path) -> Process:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe) if exe.exists() else "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    return Process("moto", cmd, log_dir / "moto.log", "/moto-api/", env, port)
