"""A real ``ehsm-kms serve`` process on a loopback port, and a small signing client for it.

Used by the end-to-end and robustness suites. Every wait is bounded; a server that does not come up fails the test
with its log.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.signing import body

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE_ENV = "EHSM_KMS_TEST_PASSPHRASE"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    data_dir: Path
    store_url: str
    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    tls: bool = False  # set when ``extra`` makes the server speak HTTPS

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "ehsm_kms.cli.main", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--store-url", self.store_url,
            "--sealer", "passphrase", "--sealer-secret", f"env:{PASSPHRASE_ENV}",
            *self.extra,
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> LiveServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"server-{self.port}.log"
        env = dict(os.environ, **{PASSPHRASE_ENV: "test passphrase, not a real one"})
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=1.0, verify=False).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not become ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """kill -9 of the server process (its core child sees the channel close and exits)."""
        self.stop(signal.SIGKILL)


@contextlib.contextmanager
def running(data_dir: Path, store_url: str, *extra: str) -> Iterator[LiveServer]:
    server = LiveServer(data_dir, store_url, extra=list(extra)).start()
    try:
        yield server
    finally:
        server.stop()


class KmsClient:
    """Signs requests by the contract's rule and posts them; returns the JSON envelope."""

    def __init__(self, url: str, appid: str = "", apikey: str = "") -> None:
        self.http = httpx.Client(base_url=url, timeout=60.0)
        self.appid, self.apikey = appid, apikey

    def close(self) -> None:
        self.http.close()

    def enroll(self, **params: str) -> dict[str, Any]:
        out: dict[str, Any] = self.http.get("/ehsm", params={"Action": "Enroll", **params}).json()
        if out["code"] == 200:
            self.appid, self.apikey = out["result"]["appid"], out["result"]["apikey"]
        return out

    def signed_body(self, payload: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
        return body(self.appid, self.apikey, payload, **kw)

    def post(self, action: str, json_body: Any = None, *, content: bytes | None = None) -> dict[str, Any]:
        if content is not None:
            resp = self.http.post(
                "/ehsm/", params={"Action": action}, content=content, headers={"content-type": "application/json"}
            )
        else:
            resp = self.http.post("/ehsm/", params={"Action": action}, json=json_body)
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        return out

    def call(self, action: str, payload: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.post(action, self.signed_body(payload, **kw))

    def ok(self, action: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        out = self.call(action, payload)
        assert out["code"] == 200, out
        result: dict[str, Any] = out["result"]
        return result


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
