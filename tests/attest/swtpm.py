"""A real software TPM (swtpm, Debian's ``swtpm``) on free loopback ports, for the tpm2 tests.

``swtpm socket --tpm2 --server type=tcp,port=P --ctrl type=tcp,port=P+1 --flags not-need-init,startup-clear``: the
TPM is started and cleared, so a test can quote at once; its state lives in a temporary directory. Every wait is
bounded. Without the ``swtpm`` binary the tests fail with how to install it (they never skip: the tpm2 kind must
be shown working on a real TPM implementation).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _port_pair() -> int:
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two free loopback ports in a row")


@dataclass
class Swtpm:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_swtpm(state: Path) -> Swtpm:
    binary = shutil.which("swtpm")
    if binary is None:
        pytest.fail("swtpm is not installed: apt-get install swtpm swtpm-tools tpm2-tools libtss2-dev")
    state.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # another process may take a port between the check and swtpm's bind
        port = _port_pair()
        log = state / f"swtpm-{port}.log"
        command = [
            binary, "socket", "--tpm2",
            "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            "--tpmstate", f"dir={state}",
            "--flags", "not-need-init,startup-clear",
            "--log", f"file={log}",
        ]  # fmt: skip
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Swtpm(port, proc, log)
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    pytest.fail(f"swtpm did not start; see {state}")


@contextlib.contextmanager
def running_swtpm(state: Path) -> Iterator[Swtpm]:
    tpm = start_swtpm(state)
    try:
        yield tpm
    finally:
        tpm.stop()
