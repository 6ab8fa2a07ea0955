"""Settings: a TOML file < environment (``EHSM_KMS_<NAME>``) < command line. The only reader of ``os.environ``.

Settings are frozen and built once at start (never parsed at import). Every ``serve`` flag is also a setting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ehsm_kms import errors
from ehsm_kms.core import coreconfig

ENV_PREFIX = "EHSM_KMS_"
ENROLL_MODES = ("open", "token", "closed")
CORE_MODES = ("isolated", "inprocess")
RUN_MODES = ("single", "cluster")
SEALERS = coreconfig.SEALERS


def default_data_dir() -> Path:
    """The per-user data directory: $XDG_DATA_HOME/ehsm-kms, else ~/.local/share/ehsm-kms."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ehsm-kms"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9000
    workers: int = 1  # server processes sharing the listening socket (each with its own core)
    data_dir: str = ""
    store_url: str = ""  # sqlite:///path or postgresql://...; default: SQLite in data_dir
    run_mode: str = "single"  # single: the core seals its own DK; cluster: the DK comes from the dkeycache
    dkeycache_socket: str = "/run/ehsm-kms/dkeycache.sock"  # cluster mode: the machine's dkeycache
    dk_refresh_interval_ms: int = 30000  # how often the core looks for a newer DK ring (0: only on demand)
    core_mode: str = "isolated"
    sealer: str = "passphrase"
    sealer_secret: str = ""  # file:<path> | env:<VAR> | prompt
    sealer_tcti: str = "device:/dev/tpmrm0"  # tpm2 sealer: the TPM that seals the DK
    pkcs11_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token: str = "ehsm-kms"
    allow_file_sealer: bool = False
    enroll_mode: str = ""  # "" = open on loopback, token otherwise
    tls_cert: str = ""
    tls_key: str = ""
    tls_self_signed: bool = False
    allow_plain_http: bool = False
    key_cache_ttl_ms: int = 1000
    scheduler_interval_ms: int = 5000  # background jobs (due deletions, rotations); 0 = none on this node
    audit_fail_closed: bool = False  # refuse a request whose audit record cannot be written
    log_level: str = "info"
    access_log: bool = True  # one line per request (id, action, appid, code, ms, client; never a payload)
    attestation_provider: str = ""  # GenerateQuote's evidence: "" (no TEE), "sgx-dcap" (Gramine) or "tpm2"
    tpm2_tcti: str = "device:/dev/tpmrm0"  # tpm2 provider: the TPM (e.g. swtpm:host=127.0.0.1,port=2321)
    tpm2_pcrs: str = "sha256:0,1,2,3,4,5,6,7"  # tpm2 provider: the PCRs quoted
    collateral_file: str = ""  # VerifyQuote: DCAP collateral (JSON, dcap-qvl's form); or pccs_url
    pccs_url: str = ""  # VerifyQuote: a PCCS to fetch collateral from, when no collateral_file is given
    attestation_time: int = 0  # test hook: VerifyQuote's verification time, unix seconds (0: now; never in production)

    # ---------------------------------------------------------------- derived values
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    @property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{self.data_path / 'ehsm-kms.db'}"

    @property
    def sealed_path(self) -> Path:
        return self.data_path / "domain-key.sealed"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def effective_enroll_mode(self) -> str:
        return self.enroll_mode or ("open" if self.loopback else "token")

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert) or self.tls_self_signed

    def validate(self) -> Settings:
        if self.enroll_mode and self.enroll_mode not in ENROLL_MODES:
            raise errors.ConfigError(f"enroll_mode must be one of {', '.join(ENROLL_MODES)}")
        if self.core_mode not in CORE_MODES:
            raise errors.ConfigError(f"core_mode must be one of {', '.join(CORE_MODES)}")
        if self.sealer not in SEALERS:
            raise errors.ConfigError(f"sealer must be one of {', '.join(SEALERS)}")
        if self.run_mode not in RUN_MODES:
            raise errors.ConfigError(f"run_mode must be one of {', '.join(RUN_MODES)}")
        if not 1 <= self.workers <= 64:
            raise errors.ConfigError("workers must be between 1 and 64")
        if self.run_mode == "cluster" and not self.dkeycache_socket:
            raise errors.ConfigError("run_mode cluster needs dkeycache_socket (the dkeycache's Unix socket)")
        if self.dk_refresh_interval_ms < 0:
            raise errors.ConfigError("dk_refresh_interval_ms must be 0 or more")
        if not 0 <= self.port <= 65535:
            raise errors.ConfigError("port must be between 0 and 65535")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise errors.ConfigError("tls_cert and tls_key go together")
        if not self.tls_enabled and not self.loopback and not self.allow_plain_http:
            raise errors.ConfigError(
                "plain HTTP is only served on loopback; give tls_cert/tls_key, tls_self_signed, "
                "or allow_plain_http explicitly"
            )
        return self


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind_name == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if kind_name == "int":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        return str(raw)
    except ValueError:
        raise errors.ConfigError(f"setting {name}: {raw!r} is not a valid {kind_name}") from None


def load(
    *,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the TOML file, then the environment, then ``overrides`` (the command line)."""
    env = os.environ if environ is None else environ
    known = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise errors.ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise errors.ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        section = data.get("server", data)
        for key, raw in section.items():
            if key not in known:
                raise errors.ConfigError(f"unknown setting {key!r} in {path}")
            values[key] = _coerce(key, raw, known[key])
    for key, kind in known.items():
        raw_env = env.get(ENV_PREFIX + key.upper())
        if raw_env is not None:
            values[key] = _coerce(key, raw_env, kind)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in known:
            raise errors.ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw, known[key])
    return dataclasses.replace(Settings(), **values).validate()


def env_value(name: str) -> str | None:
    """An environment variable for the few places that name one by design (sealer secrets, SDK defaults)."""
    return os.environ.get(name)
