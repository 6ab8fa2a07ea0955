"""What every client command shares: connection options, where the server and credentials come from, output.

Sources, first match wins: the command line (``--url``, ``--appid``, ``--apikey-file``), then the environment
(``EHSM_KMS_URL``/``EHSM_SERVER_URL``, ``EHSM_KMS_APPID``/``EHSM_APPID``, ``EHSM_KMS_APIKEY``/``EHSM_APIKEY``,
``EHSM_KMS_CA_BUNDLE``, ``EHSM_INSECURE``), then the profile (``EHSM_KMS_PROFILE`` or ``default``). A profile named
with ``--profile`` comes before the environment. Without an APIKey from any of them, a terminal is prompted
(hidden). The APIKey is never taken from the command line itself, so it never shows in ``ps`` or shell history.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
from click.shell_completion import CompletionItem

from ehsm_kms import config
from ehsm_kms.cli import profiles
from ehsm_kms.client import Client
from ehsm_kms.client._base import APIKEY_ENV, APPID_ENV, CA_BUNDLE_ENV, URL_ENV, env_first
from ehsm_kms.client.errors import CredentialsMissing
from ehsm_kms.core.specs import DigestMode, KeySpec, KeyUsage, MessageType, Origin, PaddingMode

INSECURE_ENV = ("EHSM_KMS_INSECURE", "EHSM_INSECURE")
PROFILE_ENV = "EHSM_KMS_PROFILE"
_TRUE = ("1", "true", "yes", "on")
_CONN_KEYS = ("url", "appid", "apikey_file", "profile", "ca_bundle", "insecure", "timeout", "as_json")


def _fixed(value: Any) -> Callable[[], Any]:
    return lambda: value


def _env_flag(names: tuple[str, ...]) -> bool | None:
    value = env_first(names)
    return None if value is None else value.strip().lower() in _TRUE


@dataclass(frozen=True, slots=True)
class Options:
    url: str | None
    appid: str | None
    apikey_file: str | None
    profile: str | None
    ca_bundle: str | None
    insecure: bool
    timeout: float
    as_json: bool

    # ---------------------------------------------------------------- sources
    def _profile(self) -> profiles.Profile | None:
        name = self.profile or config.env_value(PROFILE_ENV) or "default"
        found = profiles.load().get(name)
        if found is None and (self.profile or config.env_value(PROFILE_ENV)):
            raise click.UsageError(f"no profile named {name!r} (see: ehsm-kms profile list)")
        return found

    def _layers(self) -> list[dict[str, Callable[[], Any]]]:
        cli: dict[str, Callable[[], Any]] = {}
        if self.url:
            cli["url"] = lambda: self.url
        if self.appid:
            cli["appid"] = lambda: self.appid
        if self.apikey_file:
            path = self.apikey_file
            cli["apikey"] = lambda: profiles.read_secret_file(path)
        if self.ca_bundle:
            cli["ca_bundle"] = lambda: self.ca_bundle
        if self.insecure:
            cli["insecure"] = lambda: True
        env: dict[str, Callable[[], Any]] = {}
        for key, names in (
            ("url", URL_ENV),
            ("appid", APPID_ENV),
            ("apikey", APIKEY_ENV),
            ("ca_bundle", CA_BUNDLE_ENV),
        ):
            value = env_first(names)
            if value:
                env[key] = _fixed(value)
        flag = _env_flag(INSECURE_ENV)
        if flag is not None:
            env["insecure"] = _fixed(flag)
        prof: dict[str, Callable[[], Any]] = {}
        found = self._profile()
        if found is not None:
            for key in ("url", "appid", "ca_bundle"):
                value = getattr(found, key)
                if value:
                    prof[key] = _fixed(value)
            if found.apikey or found.apikey_file:
                prof["apikey"] = found.read_apikey
            if found.insecure:
                prof["insecure"] = lambda: True
        return [cli, prof, env] if self.profile else [cli, env, prof]

    def settings(self, *, apikey: bool = True) -> dict[str, Any]:
        """The winning value of each setting (None where no source has one); the APIKey is read only if asked for."""
        layers = self._layers()
        out: dict[str, Any] = {}
        for key in ("url", "appid", "apikey", "ca_bundle", "insecure"):
            if key == "apikey" and not apikey:
                out[key] = None
                continue
            out[key] = next((layer[key]() for layer in layers if key in layer), None)
        return out

    def client(self, *, credentials: bool = True) -> Client:
        """A client for the resolved server; ``credentials`` False for Enroll and GetVersion."""
        s = self.settings(apikey=credentials)
        if not s["url"]:
            raise CredentialsMissing(
                "no server URL: give --url, set EHSM_KMS_URL (or EHSM_SERVER_URL), or add a profile "
                "(ehsm-kms profile add)"
            )
        if credentials:
            if not s["appid"]:
                raise CredentialsMissing(
                    "no appid: give --appid, set EHSM_KMS_APPID (or EHSM_APPID), or add a profile "
                    "(ehsm-kms profile add)"
                )
            if not s["apikey"]:
                if not sys.stdin.isatty():
                    raise CredentialsMissing(
                        "no APIKey: give --apikey-file, set EHSM_KMS_APIKEY (or EHSM_APIKEY), or add a profile"
                    )
                s["apikey"] = click.prompt("APIKey", hide_input=True, err=True)
        if s["insecure"]:
            click.echo("warning: TLS certificate verification is off", err=True)
        return Client(
            s["url"],
            s["appid"] or "",
            s["apikey"] or "",
            ca_bundle=s["ca_bundle"] or "",
            insecure=bool(s["insecure"]),
            timeout=self.timeout,
        )

    # ---------------------------------------------------------------- output
    def emit(self, data: Any, human: str | Callable[[], None] | None = None) -> None:
        """``data`` as one line of JSON with ``--json``; otherwise ``human`` (text, or a function that prints)."""
        if self.as_json:
            click.echo(json.dumps(data, ensure_ascii=False))
        elif callable(human):
            human()
        elif human is not None:
            click.echo(human)


OPTION_TABLE: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "url": click.option(
        "--url", help="Server URL, e.g. https://kms.example.com:9000 [env EHSM_KMS_URL, EHSM_SERVER_URL]."
    ),
    "appid": click.option("--appid", help="App id [env EHSM_KMS_APPID, EHSM_APPID]."),
    "apikey_file": click.option(
        "--apikey-file",
        type=click.Path(dir_okay=False, allow_dash=True),
        help="File holding the APIKey ('-': standard input) [env EHSM_KMS_APIKEY, EHSM_APIKEY].",
    ),
    "profile": click.option("--profile", help="Profile of the config file [env EHSM_KMS_PROFILE; default 'default']."),
    "ca_bundle": click.option(
        "--ca-bundle",
        type=click.Path(dir_okay=False, exists=True),
        help="CA certificates (PEM) to verify the server with [env EHSM_KMS_CA_BUNDLE].",
    ),
    "insecure": click.option(
        "--insecure", is_flag=True, default=False, help="Do not verify the server's TLS certificate."
    ),
    "timeout": click.option(
        "--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds."
    ),
    "as_json": click.option(
        "--json", "as_json", is_flag=True, default=False, help="Print JSON (one line) for scripts."
    ),
}
"""Every client command's options, by the parameter they set (``remote-admin`` takes all but the app's)."""
_OPTIONS = tuple(OPTION_TABLE.values())


def kms_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the connection and output options; it receives them as its first argument."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opts = Options(**{k: kwargs.pop(k) for k in _CONN_KEYS})
        try:
            return fn(opts, *args, **kwargs)
        except ValueError as exc:  # bad input the SDK refused before sending (sizes, encodings)
            raise click.UsageError(str(exc)) from None
        except OSError as exc:
            raise click.FileError(exc.filename or "?", hint=exc.strerror or str(exc)) from None

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


# ---------------------------------------------------------------- wire names
class WireName(click.ParamType[str]):
    """A wire enum name (``EH_SHA_256``), accepted in any case, without its prefix, or by a short alias."""

    def __init__(self, kind: str, names: Iterable[str], prefix: str = "EH_", aliases: Mapping[str, str] | None = None):
        self.name = kind
        self.names = list(names)
        self.prefix = prefix
        self.aliases = dict(aliases or {})

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, str):
            text = value.strip()
            upper = text.upper().replace("-", "_")
            for candidate in (text, upper, self.prefix + upper):
                if candidate in self.names:
                    return candidate
            alias = self.aliases.get(text.lower())
            if alias is not None:
                return alias
        self.fail(f"{value!r} is not a {self.name}: one of {', '.join(self.names)}", param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        options = [*self.names, *self.aliases]
        return [CompletionItem(o) for o in options if o.lower().startswith(incomplete.lower())]


# ---------------------------------------------------------------- input and output
def read_input(path: str | None, text: str | None = None) -> bytes:
    """``--text`` as UTF-8, else the file ``path``, else (``-`` or nothing) standard input."""
    if text is not None:
        return text.encode("utf-8")
    if path and path != "-":
        return Path(path).read_bytes()
    return sys.stdin.buffer.read()


def read_b64(value: str, what: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise click.BadParameter(f"{what} is not base64") from None


def write_output(data: bytes, path: str | None) -> None:
    if path and path != "-":
        Path(path).write_bytes(data)
        return
    out: BinaryIO = sys.stdout.buffer
    out.write(data)
    out.flush()


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Rows under headers, columns padded to their widest cell."""
    body = [list(map(str, row)) for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(headers)]
    for line in [list(headers), *body]:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())


KEYSPEC = WireName(
    "keyspec",
    KeySpec.__members__,
    aliases={
        "aes128": "EH_AES_GCM_128",
        "aes192": "EH_AES_GCM_192",
        "aes256": "EH_AES_GCM_256",
        "rsa2048": "EH_RSA_2048",
        "rsa3072": "EH_RSA_3072",
        "rsa4096": "EH_RSA_4096",
        "p224": "EH_EC_P224",
        "p256": "EH_EC_P256",
        "p256k": "EH_EC_P256K",
        "secp256k1": "EH_EC_P256K",
        "p384": "EH_EC_P384",
        "p521": "EH_EC_P521",
        "sm4ctr": "EH_SM4_CTR",
        "sm4cbc": "EH_SM4_CBC",
    },
)
ORIGIN = WireName("origin", Origin.__members__, aliases={"internal": "EH_INTERNAL_KEY", "external": "EH_EXTERNAL_KEY"})
KEYUSAGE = WireName(
    "keyusage",
    KeyUsage.__members__,
    prefix="EH_KEYUSAGE_",
    aliases={"encrypt": "EH_KEYUSAGE_ENCRYPT_DECRYPT", "sign": "EH_KEYUSAGE_SIGN_VERIFY"},
)
DIGEST = WireName(
    "digest",
    DigestMode.__members__,
    aliases={"sha224": "EH_SHA_224", "sha256": "EH_SHA_256", "sha384": "EH_SHA_384", "sha512": "EH_SHA_512"},
)
PADDING = WireName(
    "padding",
    PaddingMode.__members__,
    aliases={"pkcs1": "EH_RSA_PKCS1", "pss": "EH_RSA_PKCS1_PSS", "oaep": "EH_RSA_PKCS1_OAEP", "none": "EH_PAD_NONE"},
)
MESSAGE_TYPE = WireName("message-type", MessageType.__members__)
