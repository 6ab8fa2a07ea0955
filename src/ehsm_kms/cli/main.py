"""The ``ehsm-kms`` command: server commands (``serve``, ``admin ...``) and client commands (:mod:`.commands`).

Exit codes come from the error classes (:mod:`ehsm_kms.errors`); secrets are prompted hidden, never echoed and never
required on the command line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import click

from ehsm_kms import __version__, config, errors
from ehsm_kms.cli import admin as admin_commands
from ehsm_kms.cli import commands as client_commands
from ehsm_kms.cli import serve as serve_cmd


class _ErrorsToExitCodes(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.EhsmError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_ErrorsToExitCodes)
@click.version_option(__version__, prog_name="ehsm-kms")
def main() -> None:
    """ehsm-kms: a self-hosted Key Management Service, wire-compatible with eHSM-KMS."""


main.add_command(serve_cmd.serve)
client_commands.register(main)


@main.group()
def admin() -> None:
    """Administration on the node, against its store."""


admin_commands.register(admin)


@admin.command("issue-enroll-token")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option("--data-dir", help="Data directory (default: the per-user data directory).")
@click.option("--store-url", help="sqlite:///path or postgresql://... (default: SQLite in the data directory).")
@click.option("--ttl-hours", type=click.IntRange(1, 24 * 30), default=24, show_default=True)
def issue_enroll_token(config_file: str | None, data_dir: str | None, store_url: str | None, ttl_hours: int) -> None:
    """Print a one-time enrollment token (for enroll_mode=token)."""
    from ehsm_kms.service.apps import issue_enroll_token as issue
    from ehsm_kms.storage import open_store

    settings = config.load(config_file=config_file, overrides={"data_dir": data_dir, "store_url": store_url})

    async def run() -> str:
        settings.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = open_store(settings.store)
        try:
            await store.migrate()
            return await issue(store, int(time.time() * 1000), ttl_hours * 3600 * 1000)
        finally:
            await store.close()

    click.echo(asyncio.run(run()))


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
