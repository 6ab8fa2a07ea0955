"""``ehsm-kms dkeyserver`` (root, worker; rotate, recover, verify-audit, status) and ``ehsm-kms dkeycache``.

Every option can also come from the environment: ``EHSM_KMS_DKS_<OPTION>`` for the dkeyserver and its
subcommands, ``EHSM_KMS_DKC_<OPTION>`` for the dkeycache (upper case, ``-`` as ``_``; repeatable options take
several values separated by spaces). A passphrase or PIN is never an option's value: ``--sealer-secret`` names
where it comes from (``file:<path>``, ``env:<VAR>`` or ``prompt``). The provisioning modules are imported only
when a command runs (they load the key libraries, which the ``ehsm-kms`` client commands never need).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ehsm_kms import errors
from ehsm_kms.core import coreconfig

KINDS = ("tpm2", "sgx-dcap", "tdx", "none")
DKS, DKC = "EHSM_KMS_DKS_", "EHSM_KMS_DKC_"
F = Callable[..., Any]


def _opt(prefix: str, *names: str, **kw: Any) -> Callable[[F], F]:
    long = next(n for n in names if n.startswith("--"))
    kw.setdefault("envvar", prefix + long[2:].upper().replace("-", "_"))
    kw.setdefault("show_envvar", True)
    return click.option(*names, **kw)


def _apply(fn: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        fn = option(fn)
    return fn


def _evidence_options(prefix: str) -> list[Callable[[F], F]]:
    return [
        _opt(prefix, "--evidence", type=click.Choice(KINDS), help="Kind of evidence this machine proves itself with."),
        _opt(prefix, "--tpm2-tcti", help="TPM for tpm2 evidence, e.g. device:/dev/tpmrm0 or swtpm:host=..,port=.."),
        _opt(prefix, "--tpm2-pcrs", help="PCRs to quote (tpm2-tools form, default sha256:0,1,2,3,4,5,6,7)."),
        _opt(
            prefix, "--gramine-dir", help="Gramine's attestation files (sgx-dcap evidence; default /dev/attestation)."
        ),
    ]


def _fetch_options(prefix: str, server: str, ca: str, what: str) -> list[Callable[[F], F]]:
    title = what[0].upper() + what[1:]
    return [
        _opt(prefix, server, multiple=True, help=f"{title} to fetch the domain key from (HOST:PORT; repeatable)."),
        _opt(prefix, ca, multiple=True, type=click.Path(dir_okay=False), help=f"CA or certificate pinning {what}."),
        _opt(prefix, "--refresh-interval", type=click.FloatRange(0.1), default=300.0, show_default=True,
             help="Seconds between fetches (to follow rotations)."),
        _opt(prefix, "--backoff-initial", type=click.FloatRange(0.01), default=0.5, show_default=True,
             help="First retry delay (seconds) when no server answers."),
        _opt(prefix, "--backoff-max", type=click.FloatRange(0.01), default=30.0, show_default=True,
             help="Longest retry delay (seconds)."),
        _opt(prefix, "--fetch-timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
             help="Seconds one fetch may take."),
    ]  # fmt: skip


def _sealer_options(prefix: str) -> list[Callable[[F], F]]:
    return [
        _opt(prefix, "--sealer", type=click.Choice(coreconfig.SEALERS), default="passphrase", show_default=True,
             help="How the root seals the domain key at rest."),
        _opt(prefix, "--sealer-secret", help="Passphrase / PIN source: file:<path>, env:<VAR> or prompt."),
        _opt(prefix, "--pkcs11-module", default="/usr/lib/softhsm/libsofthsm2.so", show_default=True),
        _opt(prefix, "--pkcs11-token", default="ehsm-kms", show_default=True),
        _opt(prefix, "--pkcs11-key-label", default="ehsm-kms-dk-wrap", show_default=True),
        _opt(prefix, "--sealer-tcti", default="device:/dev/tpmrm0", show_default=True, help="TPM of the tpm2 sealer."),
        _opt(prefix, "--allow-file-sealer", is_flag=True, help="Allow the plaintext 'file' sealer (dev only)."),
    ]  # fmt: skip


def _log_option(prefix: str) -> Callable[[F], F]:
    return _opt(prefix, "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _make_sealer(o: dict[str, Any], data_dir: Path) -> Any:
    from ehsm_kms.core.bootstrap import make_sealer
    from ehsm_kms.core.coreconfig import CoreConfig

    source, secret = o["sealer_secret"], None
    if o["sealer"] in ("passphrase", "pkcs11") and (not source or source == "prompt"):
        if not sys.stdin.isatty():
            raise errors.ConfigError(
                f"the '{o['sealer']}' sealer needs a secret: --sealer-secret file:<path> or env:<VAR>, or a terminal"
            )
        what = "PIN" if o["sealer"] == "pkcs11" else "passphrase"
        secret = click.prompt(f"Domain-key {what}", hide_input=True).encode("utf-8")
        source = None
    cfg = CoreConfig(
        sealer=o["sealer"],
        sealed_path=str(data_dir / "dk.sealed"),
        secret_source=source,
        secret=secret,
        pkcs11_module=o["pkcs11_module"],
        pkcs11_token=o["pkcs11_token"],
        pkcs11_key_label=o["pkcs11_key_label"],
        tpm2_tcti=o["sealer_tcti"],
        allow_file_sealer=o["allow_file_sealer"],
    )
    return make_sealer(cfg)


def _fetching(o: dict[str, Any], servers: tuple[str, ...], cas: tuple[str, ...], what: str) -> Any:
    from ehsm_kms.provisioning.dkprotocol import Endpoint
    from ehsm_kms.provisioning.evidence import make_provider
    from ehsm_kms.provisioning.run import Fetching

    if not servers:
        raise errors.ConfigError(f"give at least one {what}")
    if not cas:
        raise errors.ConfigError(f"give the CA or certificate file that pins the {what}")
    if not o["evidence"]:
        raise errors.ConfigError("give --evidence: the kind of evidence this machine proves itself with")
    provider = make_provider(
        o["evidence"],
        tpm2_tcti=o["tpm2_tcti"],
        tpm2_pcrs=o["tpm2_pcrs"],
        gramine_dir=o["gramine_dir"],
        allow_unattested=o["allow_unattested"],
    )
    return Fetching(
        servers=[Endpoint.parse(s) for s in servers],
        ca_files=list(cas),
        provider=provider,
        interval=o.get("refresh_interval", 300.0),
        backoff_initial=o.get("backoff_initial", 0.5),
        backoff_max=o.get("backoff_max", 30.0),
        timeout=o["fetch_timeout"],
    )


def _data_dir(value: str | None) -> Path:
    if not value:
        raise errors.ConfigError("give --data-dir")
    return Path(value)


# ---------------------------------------------------------------- dkeyserver
def _dkeyserver(ctx: click.Context, **o: Any) -> None:
    """Release the domain key over TLS to clients that prove what they are (root or worker).

    Subcommands act on a running or stopped server through its data directory.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ehsm_kms.provisioning import run
    from ehsm_kms.provisioning.gate import Gate

    _setup_logging(o["log_level"])
    log = logging.getLogger("ehsm_kms.dkeyserver")
    role = o["role"]
    if role is None:
        raise errors.ConfigError("give --role root or --role worker (or a subcommand; see --help)")
    data_dir = _data_dir(o["data_dir"])
    gate = Gate.load(
        o["policy"],
        allow_unattested=o["allow_unattested"],
        collateral_file=o["collateral_file"],
        pccs_url=o["pccs_url"],
    )
    listen = run.Listening(
        host=o["host"],
        port=o["port"],
        data_dir=data_dir,
        tls_cert=o["tls_cert"],
        tls_key=o["tls_key"],
        step_timeout=o["step_timeout"],
        connection_timeout=o["connection_timeout"],
        max_connections=o["max_connections"],
    )
    if role == "root":
        if o["root"]:
            raise errors.ConfigError("--root is for a worker; a root recovers with 'dkeyserver recover'")
        sealer = _make_sealer(o, data_dir)
        run.harden(log)
        asyncio.run(run.run_root(listen, gate, sealer, create=not o["no_create"], log=log))
    else:
        fetching = _fetching(o, o["root"], o["root_ca"], "root (--root HOST:PORT)")
        run.harden(log)
        asyncio.run(run.run_worker(listen, gate, fetching, log=log))


dkeyserver = click.group(
    "dkeyserver", invoke_without_command=True, context_settings={"show_default": True}, help=_dkeyserver.__doc__
)(
    click.pass_context(
        _apply(
            _dkeyserver,
            [
                _opt(
                    DKS,
                    "--role",
                    type=click.Choice(["root", "worker"]),
                    help="root holds the sealed DK; a worker copies it from the root.",
                ),
                _opt(DKS, "--host", default="127.0.0.1", help="Address to listen on."),
                _opt(DKS, "--port", type=click.IntRange(1, 65535), default=8888),
                _opt(DKS, "--data-dir", help="Sealed DK (root), audit, TLS pair, admin socket."),
                _opt(DKS, "--tls-cert", type=click.Path(dir_okay=False), help="TLS certificate (else self-signed)."),
                _opt(DKS, "--tls-key", type=click.Path(dir_okay=False), help="TLS private key."),
                _opt(
                    DKS,
                    "--policy",
                    multiple=True,
                    type=click.Path(dir_okay=False),
                    help="Attestation policy file (TOML/JSON; repeatable: any one may accept).",
                ),
                _opt(
                    DKS,
                    "--allow-unattested",
                    is_flag=True,
                    help="Accept 'none' evidence under a none policy, and send it (development only).",
                ),
                _opt(DKS, "--collateral-file", type=click.Path(dir_okay=False), help="DCAP collateral (sgx/tdx)."),
                _opt(DKS, "--pccs-url", help="PCCS for DCAP collateral (sgx/tdx)."),
                _opt(DKS, "--no-create", is_flag=True, help="Root: refuse to start without a sealed DK."),
                *_sealer_options(DKS),
                *_fetch_options(DKS, "--root", "--root-ca", "the root (worker)"),
                *_evidence_options(DKS),
                _opt(
                    DKS,
                    "--step-timeout",
                    type=click.FloatRange(0.1),
                    default=15.0,
                    help="Seconds a client may take per protocol step.",
                ),
                _opt(
                    DKS,
                    "--connection-timeout",
                    type=click.FloatRange(0.1),
                    default=60.0,
                    help="Seconds a client connection may last.",
                ),
                _opt(DKS, "--max-connections", type=click.IntRange(1, 4096), default=64),
                _log_option(DKS),
            ],
        )
    )
)


@dkeyserver.command("rotate")
@_opt(DKS, "--data-dir", required=True, help="Data directory of the running root.")
def rotate(data_dir: str) -> None:
    """Make a new DK version on the running root (workers and caches follow at their next refresh)."""
    from ehsm_kms.provisioning.localsock import admin_call

    reply = admin_call(Path(data_dir), "rotate")
    click.echo(f"domain key rotated: version {reply['dk_version']} is current")


@dkeyserver.command("status")
@_opt(DKS, "--data-dir", required=True, help="Data directory of the running dkeyserver.")
def status(data_dir: str) -> None:
    """Role and current DK version of the running dkeyserver."""
    from ehsm_kms.provisioning.localsock import admin_call

    reply = admin_call(Path(data_dir), "status")
    click.echo(f"role {reply['role']}, domain-key version {reply['dk_version'] or 'none yet'}")


@dkeyserver.command("verify-audit")
@_opt(DKS, "--data-dir", required=True, help="Data directory whose release audit to check.")
def verify_audit(data_dir: str) -> None:
    """Check the hash chain of the release audit; exit 1 when it is broken."""
    from ehsm_kms.provisioning.audit import verify_audit as verify

    report = verify(Path(data_dir))
    for line in report.breaks:
        click.echo(f"break: {line}", err=True)
    click.echo(f"{report.records} records, last seq {report.last_seq}: {'intact' if report.intact else 'BROKEN'}")
    if not report.intact:
        raise SystemExit(errors.EXIT_GENERIC)


def _recover(**o: Any) -> None:
    """Recover a root's lost sealed DK from a worker (with this machine's evidence), then seal it here."""
    from ehsm_kms.provisioning import run

    _setup_logging(o["log_level"])
    log = logging.getLogger("ehsm_kms.dkeyserver")
    data_dir = _data_dir(o["data_dir"])
    sealer = _make_sealer(o, data_dir)
    fetching = _fetching(o, o["from_"], o["from_ca"], "worker (--from HOST:PORT)")
    run.harden(log)
    version = run.recover(data_dir, sealer, fetching, log=log)
    click.echo(f"recovered domain-key version {version} into {data_dir / 'dk.sealed'}")


recover = dkeyserver.command("recover", help=_recover.__doc__)(
    _apply(
        _recover,
        [
            _opt(DKS, "--data-dir", required=True, help="The root's data directory (without a dk.sealed)."),
            _opt(DKS, "--from", "from_", multiple=True, required=True, help="Worker HOST:PORT (repeatable)."),
            _opt(
                DKS,
                "--from-ca",
                multiple=True,
                required=True,
                type=click.Path(dir_okay=False),
                help="CA or certificate pinning the worker.",
            ),
            _opt(DKS, "--allow-unattested", is_flag=True, help="Allow sending 'none' evidence (development only)."),
            _opt(DKS, "--fetch-timeout", type=click.FloatRange(0.1), default=30.0),
            *_sealer_options(DKS),
            *_evidence_options(DKS),
            _log_option(DKS),
        ],
    )
)


# ---------------------------------------------------------------- dkeycache
def _dkeycache(**o: Any) -> None:
    """Hold the domain key for this machine's cores: fetch it from a dkeyserver, serve it on a Unix socket."""
    from ehsm_kms.provisioning import run

    _setup_logging(o["log_level"])
    log = logging.getLogger("ehsm_kms.dkeycache")
    fetching = _fetching(o, o["server"], o["server_ca"], "dkeyserver (--server HOST:PORT)")
    uids = list(o["allow_uid"]) or [os.getuid()]
    mode = int(o["socket_mode"], 8)
    run.harden(log)
    asyncio.run(run.run_cache(fetching, Path(o["socket"]), uids, socket_mode=mode, log=log))


dkeycache = click.command("dkeycache", help=_dkeycache.__doc__, context_settings={"show_default": True})(
    _apply(
        _dkeycache,
        [
            *_fetch_options(DKC, "--server", "--server-ca", "a dkeyserver"),
            _opt(DKC, "--socket", default="/run/ehsm-kms/dkeycache.sock", help="Unix socket the cores connect to."),
            _opt(DKC, "--socket-mode", type=click.Choice(["0600", "0660"]), default="0660"),
            _opt(
                DKC,
                "--allow-uid",
                multiple=True,
                type=click.IntRange(0),
                help="uid allowed to fetch (repeatable; default: this process's uid).",
            ),
            *_evidence_options(DKC),
            _opt(DKC, "--allow-unattested", is_flag=True, help="Allow sending 'none' evidence (development only)."),
            _log_option(DKC),
        ],
    )
)


def register(group: click.Group) -> None:
    group.add_command(dkeyserver)
    group.add_command(dkeycache)


__all__ = ["dkeycache", "dkeyserver", "register"]
