"""Every example of docs/cli.md runs: the shell blocks, in order, as one script against a live server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.cli.harness import Cli
from tests.client.harness import admin_from_log, require_secret_actions
from tests.live import ROOT, LiveServer

DOC = ROOT / "docs" / "cli.md"
DOC_URL = "http://127.0.0.1:9000"


def blocks(text: str) -> list[tuple[str, str]]:
    """(section heading, code) of every sh block, in order."""
    found: list[tuple[str, str]] = []
    heading = ""
    for part in re.split(r"(^## [^\n]*$|^```sh\n.*?^```$)", text, flags=re.M | re.S):
        if part.startswith("## "):
            heading = part[3:].strip()
        elif part.startswith("```sh\n"):
            found.append((heading, part[len("```sh\n") : -3]))
    return found


def run_script(
    cli: Cli, code: str, tmp_path: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = cli.process_env({"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **(extra or {})})
    script = "set -euo pipefail\n" + code.replace(DOC_URL, cli.url)
    return subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        start_new_session=True,  # no controlling terminal: nothing may prompt
    )


def test_the_doc_has_examples_for_every_section() -> None:
    sections = {heading for heading, _ in blocks(DOC.read_text())}
    assert sections >= {"Setting up", "Keys", "Encrypting, decrypting", "Signing", "Files of any size", "Secrets"}
    assert sections >= {"Attested enrollment", "Administration over the wire"}


def test_cli_examples_run(cli: Cli, tmp_path: Path, live_server: LiveServer) -> None:
    code = "\n".join(block for heading, block in blocks(DOC.read_text()) if heading != "Secrets")
    admin_id, admin_key = admin_from_log(live_server.log())
    done = run_script(cli, code, tmp_path, {"EHSM_KMS_ADMIN_ID": admin_id, "EHSM_KMS_ADMIN_KEY": admin_key})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "4111 1111 1111 1111" in out and "binary out" in out and "to RSA" in out
    assert "valid\n" in out and "not valid: exit 6" in out
    assert "refused: exit 6" in out and "card.b64" in out
    assert "keys\n" in out and "exit 4" in out
    assert "error: chunk 0 fails authentication" in done.stderr
    assert "retired: exit 5" in out and "90 application logs\n" in out
    assert "not attested: exit 6" in out and "attested enrollment needs https://" in done.stderr
    assert "revoked: exit 3" in out and "state:   active" in out and "keys:" in out
    assert admin_key not in out and admin_key not in done.stderr


def test_cli_secret_examples_run(cli: Cli, tmp_path: Path) -> None:
    require_secret_actions()
    found = blocks(DOC.read_text())
    code = "\n".join([found[0][1]] + [block for heading, block in found if heading == "Secrets"])  # enroll first
    done = run_script(cli, code, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "a new password\n" in done.stdout and "correct horse battery staple\n" in done.stdout
