"""CLI profiles: named servers and credentials in ``<config dir>/config.toml``, written mode 0600.

The file lives in ``click.get_app_dir("ehsm-kms")`` (``$XDG_CONFIG_HOME/ehsm-kms`` or ``~/.config/ehsm-kms`` on
Linux). A profile holds the server URL, the appid and either the APIKey itself or the path of a file that holds it,
plus the TLS settings. The file is replaced atomically, so a crash never leaves half of it.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from ehsm_kms import errors

APP_NAME = "ehsm-kms"
FILE_NAME = "config.toml"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    url: str | None = None
    appid: str | None = None
    apikey: str | None = None
    apikey_file: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False

    def __repr__(self) -> str:
        return f"Profile(name={self.name!r}, url={self.url!r}, appid={self.appid!r})"

    def read_apikey(self) -> str | None:
        if self.apikey:
            return self.apikey
        if self.apikey_file:
            return read_secret_file(self.apikey_file)
        return None

    @property
    def apikey_source(self) -> str:
        if self.apikey:
            return "stored"
        if self.apikey_file:
            return f"file {self.apikey_file}"
        return "none"


def config_path() -> Path:
    return Path(click.get_app_dir(APP_NAME)) / FILE_NAME


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise click.BadParameter("profile names are 1-64 letters, digits, '-' or '_'", param_hint="NAME")
    return name


def read_secret_file(path: str) -> str:
    """A secret from a file (``-``: standard input), without surrounding whitespace."""
    try:
        value = sys.stdin.readline() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {path}: {exc.strerror}") from None
    value = value.strip()
    if not value:
        raise errors.ConfigError(f"{path} is empty")
    return value


def load(path: Path | None = None) -> dict[str, Profile]:
    target = path or config_path()
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {target}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"{target} is not valid TOML: {exc}") from None
    table = data.get("profiles", {})
    if not isinstance(table, dict):
        raise errors.ConfigError(f"{target}: 'profiles' must be a table")
    known = {f.name for f in fields(Profile)} - {"name"}
    out: dict[str, Profile] = {}
    for name, raw in table.items():
        if not isinstance(raw, dict):
            raise errors.ConfigError(f"{target}: profile {name!r} must be a table")
        unknown = set(raw) - known
        if unknown:
            raise errors.ConfigError(f"{target}: profile {name!r} has unknown keys {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            wanted = bool if key == "insecure" else str
            if not isinstance(value, wanted):
                raise errors.ConfigError(f"{target}: profile {name!r}: {key} must be a {wanted.__name__}")
            values[key] = value
        out[name] = Profile(name=name, **values)
    if os.name == "posix" and any(p.apikey for p in out.values()) and target.stat().st_mode & 0o077:
        click.echo(f"warning: {target} holds APIKeys and is readable by others: chmod 600 it", err=True)
    return out


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dumps(profiles: dict[str, Profile]) -> str:
    lines = ["# ehsm-kms CLI profiles. This file may hold APIKeys: keep it private (mode 0600).", ""]
    for name in sorted(profiles):
        profile = profiles[name]
        lines.append(f"[profiles.{name}]")
        for f in fields(Profile):
            value = getattr(profile, f.name)
            if f.name == "name" or value is None or value is False:
                continue
            lines.append(f"{f.name} = {'true' if value is True else _toml_string(str(value))}")
        lines.append("")
    return "\n".join(lines)


def save(profiles: dict[str, Profile], path: Path | None = None) -> Path:
    """Write the profiles, mode 0600, replacing the file atomically."""
    target = path or config_path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(dumps(profiles))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def put(profile: Profile, path: Path | None = None) -> Path:
    profiles = load(path)
    profiles[profile.name] = profile
    return save(profiles, path)
