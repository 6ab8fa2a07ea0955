"""The README's quick start runs as written, against a live server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.live import ROOT, running


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, flags=re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["bash scripts/start.sh", "bash scripts/test.sh"]
    assert (ROOT / "scripts/start.sh").is_file() and (ROOT / "scripts/test.sh").is_file()
    assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_quick_start_example_runs(tmp_path: Path) -> None:
    blocks = _python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 1
    with running(tmp_path, f"sqlite:///{tmp_path}/kms.db") as server:
        import httpx

        made = httpx.get(server.url + "/ehsm?Action=Enroll").json()["result"]
        code = (
            blocks[0]
            .replace("http://127.0.0.1:9000/ehsm", server.url + "/ehsm")
            .replace('"<appid>"', repr(made["appid"]))
            .replace('"<apikey>"', repr(made["apikey"]))
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "b'hello'"


def test_start_script_starts_the_kms_unattended(tmp_path: Path) -> None:
    """``scripts/start.sh`` without a terminal: data directory and evaluation passphrase made, server ready."""
    import os
    import signal
    import time

    import httpx

    from tests.live import free_port

    port = free_port()
    env = dict(os.environ, EHSM_KMS_VENV=sys.prefix, EHSM_KMS_DATA_DIR=str(tmp_path / "data"))
    env.pop("EHSM_KMS_PASSPHRASE", None)
    log = tmp_path / "start.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts/start.sh"), "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(0.1)
        assert ready, log.read_text()
        version = httpx.get(f"http://127.0.0.1:{port}/ehsm?Action=GetVersion").json()
        assert version["code"] == 200 and version["result"]["version"] == "0.3.2"
        assert (tmp_path / "data" / "passphrase").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "data" / "domain-key.sealed").is_file()
        assert (tmp_path / "data" / "ehsm-kms.db").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
