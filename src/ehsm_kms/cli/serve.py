"""``ehsm-kms serve``: start one KMS node."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ehsm_kms import config, errors

log = logging.getLogger("ehsm_kms.server")


def _secret_for(settings: config.Settings) -> bytes | None:
    """A passphrase or PIN typed at a hidden prompt, when the settings name no other source (and a sealer is used:
    in cluster mode the domain key comes from the dkeycache)."""
    if (
        settings.run_mode == "cluster"
        or settings.sealer in ("file", "tpm2")
        or (settings.sealer_secret and settings.sealer_secret != "prompt")
    ):
        return None
    if not sys.stdin.isatty():
        raise errors.ConfigError(
            f"the '{settings.sealer}' sealer needs a secret: give --sealer-secret file:<path> or env:<VAR>, "
            "or run on a terminal to be prompted"
        )
    what = "PIN" if settings.sealer == "pkcs11" else "passphrase"
    creating = not settings.sealed_path.exists() and settings.sealer == "passphrase"
    value: str = click.prompt(f"Domain-key {what}", hide_input=True, confirmation_prompt=creating)
    return value.encode("utf-8")


def uvicorn_options(settings: config.Settings) -> dict[str, Any]:
    """The HTTP stack's options: httptools and uvloop (the C parser and event loop), no access log of uvicorn's
    own (ours is redacted and carries the request id), 30 s of graceful shutdown."""
    return {
        "host": settings.host,
        "port": settings.port,
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 30,
        "http": "httptools",
        "loop": "uvloop",
    }


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 9000).")
@click.option("--workers", type=int, help="Server processes sharing the port, each with its own core (default 1).")
@click.option("--data-dir", help="Data directory, created on first start (default: per-user data directory).")
@click.option("--store-url", help="sqlite:///path or postgresql://... (default: SQLite in the data directory).")
@click.option("--core-mode", type=click.Choice(config.CORE_MODES), help="isolated (default) or inprocess.")
@click.option("--run-mode", type=click.Choice(config.RUN_MODES), help="single (default) or cluster.")
@click.option("--dkeycache-socket", help="The dkeycache's Unix socket (cluster mode).")
@click.option("--sealer", type=click.Choice(config.SEALERS), help="How the domain key is sealed.")
@click.option("--sealer-tcti", help="The TPM of the tpm2 sealer (default device:/dev/tpmrm0).")
@click.option("--sealer-secret", help="Where the passphrase/PIN comes from: file:<path>, env:<VAR> or prompt.")
@click.option("--pkcs11-module", help="PKCS#11 module path (pkcs11 sealer).")
@click.option("--pkcs11-token", help="PKCS#11 token label (pkcs11 sealer).")
@click.option("--allow-file-sealer", is_flag=True, default=None, help="Allow the plaintext 'file' sealer (dev only).")
@click.option("--enroll-mode", type=click.Choice(config.ENROLL_MODES), help="open, token or closed.")
@click.option("--tls-cert", help="TLS certificate (PEM).")
@click.option("--tls-key", help="TLS private key (PEM).")
@click.option("--tls-self-signed", is_flag=True, default=None, help="Make a self-signed certificate in the data dir.")
@click.option("--allow-plain-http", is_flag=True, default=None, help="Serve plain HTTP on a non-loopback address.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--access-log/--no-access-log", default=None, help="One log line per request (default on; the audit log is kept)."
)
def serve(config_file: str | None, **overrides: Any) -> None:
    """Start a KMS node (single mode: the core creates and seals its own domain key; cluster mode: it gets the
    domain key from the machine's dkeycache, and the node answers /healthz, but /readyz only once it has it)."""
    import uvicorn

    from ehsm_kms.cli.main import setup_logging
    from ehsm_kms.server import tls
    from ehsm_kms.server.assemble import build_app

    settings = config.load(config_file=config_file, overrides=overrides)
    setup_logging(settings.log_level)
    secret = _secret_for(settings)
    ssl: dict[str, Any] = {}
    if settings.tls_cert:
        ssl = {"ssl_certfile": settings.tls_cert, "ssl_keyfile": settings.tls_key}
    elif settings.tls_self_signed:
        cert, key = tls.self_signed(settings.data_path, settings.host)
        ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    log.info(
        "starting ehsm-kms on %s://%s:%d (store %s, core %s, sealer %s, enroll_mode %s)",
        "https" if ssl else "http",
        settings.host,
        settings.port,
        settings.store.split("://")[0],
        settings.core_mode,
        settings.sealer,
        settings.effective_enroll_mode,
    )
    if settings.workers == 1:
        server = uvicorn.Server(uvicorn.Config(build_app(settings, secret=secret), **uvicorn_options(settings), **ssl))
        server.run()
        if not server.started:
            raise SystemExit(errors.EXIT_SERVER)
        return
    raise SystemExit(_run_workers(settings, secret, ssl))


def _run_workers(settings: config.Settings, secret: bytes | None, ssl: dict[str, Any]) -> int:
    import uvicorn

    from ehsm_kms.server import workers
    from ehsm_kms.server.assemble import build_app

    try:
        reserved = workers.reserve(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror)
        return errors.EXIT_SERVER

    def run_worker() -> int:
        # Each worker builds its own app (its own store connections, core child and request-id prefix).
        listening = workers.listen(settings.host, settings.port)
        server = uvicorn.Server(uvicorn.Config(build_app(settings, secret=secret), **uvicorn_options(settings), **ssl))
        server.run(sockets=[listening])
        return 0 if server.started else errors.EXIT_SERVER

    log.info("starting %d workers", settings.workers)
    return workers.Supervisor(reserved, settings.workers, run_worker).run()
