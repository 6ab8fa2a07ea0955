"""The ``ehsm-kms`` command: server commands (``serve``, ``admin ...``) and client commands (:mod:`.commands`).

Exit codes come from the error classes (:mod:`ehsm_kms.errors`); secrets are prompted hidden, never echoed and never
required on the command line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ehsm_kms import __version__, errors
from ehsm_kms.cli import admin as admin_commands
from ehsm_kms.cli import commands as client_commands
from ehsm_kms.cli import provision as provision_commands
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
provision_commands.register(main)


@main.group()
def admin() -> None:
    """Administration on the node, against its store."""


admin_commands.register(admin)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
