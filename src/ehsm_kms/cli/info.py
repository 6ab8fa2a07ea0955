"""``ehsm-kms version`` and ``ehsm-kms completion``."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from ehsm_kms import __version__
from ehsm_kms.cli.options import Options, kms_command

COMPLETE_VAR = "_EHSM_KMS_COMPLETE"


@click.command()
@kms_command
def version(opts: Options) -> None:
    """The versions of this client and of the server (GetVersion)."""
    with opts.client(credentials=False) as client:
        got = client.get_version()
    opts.emit(
        {"client": __version__, "version": got.version, "git_sha": got.git_sha, "server": got.server},
        f"client: ehsm-kms {__version__}\nserver: {got.server or 'eHSM-KMS'} (wire version {got.version}, "
        f"git {got.git_sha})",
    )


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script, e.g. eval "$(ehsm-kms completion bash)"."""
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - the choice above only names supported shells
        raise click.UsageError(f"no completion for {shell}")
    root = ctx.find_root().command
    click.echo(cls(root, {}, "ehsm-kms", COMPLETE_VAR).source())
