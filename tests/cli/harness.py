"""Running ``ehsm-kms``: in-process with click's ``CliRunner``, and as a subprocess as an operator runs it.

Each runner has a config directory of its own (``XDG_CONFIG_HOME``) and an environment without any ``EHSM_*``
variable of the machine, so profiles and credentials come only from what a test sets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from ehsm_kms.cli.main import main
from tests.live import ROOT

CLEARED = (
    "EHSM_KMS_URL",
    "EHSM_KMS_APPID",
    "EHSM_KMS_APIKEY",
    "EHSM_KMS_CA_BUNDLE",
    "EHSM_KMS_INSECURE",
    "EHSM_KMS_PROFILE",
    "EHSM_KMS_ENROLL_TOKEN",
    "EHSM_KMS_ADMIN_ID",
    "EHSM_KMS_ADMIN_KEY",
    "EHSM_SERVER_URL",
    "EHSM_APPID",
    "EHSM_APIKEY",
    "EHSM_INSECURE",
)


@dataclass
class Enrolled:
    appid: str
    apikey: str


@dataclass
class Cli:
    config_home: Path
    url: str

    @property
    def config_file(self) -> Path:
        return self.config_home / "ehsm-kms" / "config.toml"

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str | None]:
        env: dict[str, str | None] = dict.fromkeys(CLEARED)
        env["XDG_CONFIG_HOME"] = str(self.config_home)
        env.update(extra or {})
        return env

    def run(self, *args: str, input: bytes | str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(
            main, list(args), input=input, env=self.environ(env), catch_exceptions=False, prog_name="ehsm-kms"
        )

    def ok(self, *args: str, **kw: Any) -> Result:
        result = self.run(*args, **kw)
        assert result.exit_code == 0, (args, result.exit_code, result.output)
        return result

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kw).stdout)

    def enroll(self, profile: str = "default") -> Enrolled:
        self.ok("enroll", "--url", self.url, "--save-profile", profile)
        import tomllib

        entry = tomllib.loads(self.config_file.read_text())["profiles"][profile]
        return Enrolled(entry["appid"], entry["apikey"])

    # ---------------------------------------------------------------- as a subprocess
    def process_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        env["XDG_CONFIG_HOME"] = str(self.config_home)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
        env.update(extra or {})
        return env

    def spawn(
        self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "ehsm_kms.cli.main", *args],
            input=input,
            capture_output=True,
            env=self.process_env(env),
            timeout=timeout,
            check=False,
        )
