"""Throwaway SoftHSM2 tokens for tests.

Two facts shape this helper:

* SoftHSM2 reads ``SOFTHSM2_CONF`` (and so its token directory) when the module is initialised
  (C_Initialize), and it lists tokens only then: a token made afterwards by ``softhsm2-util`` is invisible
  until the module is finalised and initialised again.
* python-pkcs11 keeps one library object per module path for the whole process (``pkcs11.lib(path)`` returns
  the same object every time), so every user of SoftHSM2 in a test run shares one initialised module.

So a :class:`SoftHsm` owns one token directory and its ``softhsm2.conf``; :meth:`SoftHsm.init_token` adds a
fresh token and re-initialises the shared module so it shows up; :meth:`SoftHsm.restart` re-initialises it to
drop every session and object handle (what a process restart does to the token's view). Several tests can
share one :class:`SoftHsm` (session scope) and each take its own token; a second :class:`SoftHsm` can be
activated later, which points the shared module at its directory.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
UTIL = "softhsm2-util"
USER_PIN = "1234"
SO_PIN = "12345678"

_labels = itertools.count(1)


@dataclass(frozen=True)
class Token:
    label: str
    pin: str
    so_pin: str


class SoftHsm:
    """One SoftHSM2 token directory and configuration, made under ``root``."""

    def __init__(self, root: Path) -> None:
        if not Path(MODULE).is_file() or shutil.which(UTIL) is None:
            pytest.fail(f"SoftHSM2 is not installed: need {MODULE} and {UTIL} (Debian package softhsm2)")
        self.module = MODULE
        self.root = root
        self.tokendir = root / "tokens"
        self.tokendir.mkdir(parents=True, exist_ok=True)
        self.conf = root / "softhsm2.conf"
        self.conf.write_text(
            f"directories.tokendir = {self.tokendir}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        self._previous = os.environ.get("SOFTHSM2_CONF")

    def activate(self) -> None:
        """Point the process's SoftHSM2 module at this directory (re-initialising it if it was loaded)."""
        os.environ["SOFTHSM2_CONF"] = str(self.conf)
        pkcs11.lib(self.module).reinitialize()

    def restart(self) -> None:
        """Finalise and initialise the module: every open session and object handle is gone."""
        pkcs11.lib(self.module).reinitialize()

    def init_token(self, label: str | None = None, *, pin: str = USER_PIN, so_pin: str = SO_PIN) -> Token:
        """A new, empty token in this directory, visible to the module when this returns."""
        label = label or f"test-{os.getpid()}-{next(_labels)}"
        env = dict(os.environ, SOFTHSM2_CONF=str(self.conf))
        result = subprocess.run(
            [UTIL, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"softhsm2-util --init-token failed: {result.stderr.strip() or result.stdout.strip()}")
        self.activate()
        return Token(label=label, pin=pin, so_pin=so_pin)

    def close(self) -> None:
        """Leave the module finalised (the next user initialises it); give the environment variable back."""
        pkcs11.lib(self.module).finalize()
        if self._previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = self._previous
