"""Every example of docs/sdk.md runs: the python blocks, in order and in one namespace, against a live server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from ehsm_kms.client import Client
from tests.client.harness import admin_from_log, require_secret_actions
from tests.live import ROOT, LiveServer

DOC = ROOT / "docs" / "sdk.md"
RUNNER = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for number, (heading, code) in enumerate(blocks):
    try:
        exec(compile(code, f"docs/sdk.md block {number} ({heading})", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"example {number} in section {heading!r} failed")
"""


def blocks(text: str) -> list[tuple[str, str]]:
    """(section heading, code) of every python block, in order."""
    found: list[tuple[str, str]] = []
    heading = ""
    for part in re.split(r"(^## [^\n]*$|^```python\n.*?^```$)", text, flags=re.M | re.S):
        if part.startswith("## "):
            heading = part[3:].strip()
        elif part.startswith("```python\n"):
            found.append((heading, part[len("```python\n") : -3]))
    return found


def run_examples(live_server: LiveServer, tmp_path: Path, selected: list[tuple[str, str]]) -> str:
    with Client(live_server.url, appid="", apikey="") as client:
        app = client.enroll()
    (tmp_path / "blocks.json").write_text(json.dumps(selected))
    admin_id, admin_key = admin_from_log(live_server.log())
    env = {
        "EHSM_KMS_ADMIN_ID": admin_id,
        "EHSM_KMS_ADMIN_KEY": admin_key,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT / "src"),
        "EHSM_KMS_URL": live_server.url,
        "EHSM_KMS_APPID": app.appid,
        "EHSM_KMS_APIKEY": app.apikey,
    }
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER, str(tmp_path / "blocks.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_doc_has_examples_for_every_section() -> None:
    sections = {heading for heading, _ in blocks(DOC.read_text())}
    assert sections >= {"Connecting", "Keys", "Encrypting", "Signing", "Async", "Envelope encryption", "Secrets"}
    assert sections >= {"Attested enrollment", "Administration"}


def test_sdk_examples_run(live_server: LiveServer, tmp_path: Path) -> None:
    out = run_examples(live_server, tmp_path, [b for b in blocks(DOC.read_text()) if b[0] != "Secrets"])
    assert "Version(version='0.3.2'" in out
    assert "Decryption failed, Please confirm that your parameters are correct." in out
    assert "chunk 0 fails authentication" in out and "600010 1" in out
    assert "hits=9, misses=1" in out and "b'async'" in out
    assert "retired: key version retired" in out and "application logs\n" in out
    assert "refused: attested enrollment needs https://" in out
    assert re.search(r"^True\n\d+\nrevoked\nactive\n", out, flags=re.M), out[-2000:]


def test_sdk_secret_examples_run(live_server: LiveServer, tmp_path: Path) -> None:
    require_secret_actions()
    found = blocks(DOC.read_text())
    out = run_examples(live_server, tmp_path, [found[0]] + [b for b in found if b[0] == "Secrets"])  # client first
    assert "correct horse battery staple" in out
