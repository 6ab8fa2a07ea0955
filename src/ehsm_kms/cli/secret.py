"""``ehsm-kms secret ...``: the secret manager (contract section 6).

A secret's value is never taken from the command line: it comes from ``--value-file`` (``-`` for standard input),
from standard input when it is not a terminal, or from a hidden prompt. One trailing newline is dropped (so
``echo "$VALUE" | ehsm-kms secret put ...`` stores ``$VALUE``) unless ``--keep-newline``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ehsm_kms.cli.options import Options, kms_command, table, when

NAME = click.option("--name", "secret_name", required=True, help="The secret's name.")
VALUE_FILE = click.option(
    "--value-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="File holding the value ('-': standard input). Default: standard input, or a hidden prompt on a terminal.",
)
KEEP_NEWLINE = click.option("--keep-newline", is_flag=True, help="Keep a trailing newline of the value.")


def _value(value_file: str | None, keep_newline: bool) -> str:
    if value_file and value_file != "-":
        text = Path(value_file).read_text(encoding="utf-8")
    elif value_file == "-" or not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        text = click.prompt("Secret value", hide_input=True, confirmation_prompt=True, err=True)
    if not keep_newline:
        text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise click.UsageError("the secret value is empty")
    return text


@click.group()
def secret() -> None:
    """Store, version and read secrets."""


@secret.command("create")
@NAME
@VALUE_FILE
@KEEP_NEWLINE
@click.option("--description", help="A description (not secret).")
@click.option("--encryption-keyid", help="Symmetric key to encrypt the secret with (default: the app's own).")
@click.option("--rotation-interval", help="e.g. 30d or 12h (6 h to 8760 h).")
@kms_command
def create(
    opts: Options,
    secret_name: str,
    value_file: str | None,
    keep_newline: bool,
    description: str | None,
    encryption_keyid: str | None,
    rotation_interval: str | None,
) -> None:
    """Create a secret (its version 1)."""
    value = _value(value_file, keep_newline)
    with opts.client() as client:
        client.create_secret(
            secret_name,
            value,
            encryption_key_id=encryption_keyid,
            description=description,
            rotation_interval=rotation_interval,
        )
    opts.emit({"secretName": secret_name, "created": True}, f"created secret {secret_name}")


@secret.command("put")
@NAME
@VALUE_FILE
@KEEP_NEWLINE
@kms_command
def put(opts: Options, secret_name: str, value_file: str | None, keep_newline: bool) -> None:
    """Store a new current version of a secret."""
    value = _value(value_file, keep_newline)
    with opts.client() as client:
        client.put_secret_value(secret_name, value)
    opts.emit({"secretName": secret_name, "put": True}, f"stored a new version of {secret_name}")


@secret.command("get")
@NAME
@click.option("--version", "version_id", type=click.IntRange(min=1), help="A version (default: the current one).")
@kms_command
def get(opts: Options, secret_name: str, version_id: int | None) -> None:
    """Print a secret's value."""
    with opts.client() as client:
        got = client.get_secret_value(secret_name, version_id)
    opts.emit(
        {"secretName": got.name, "secretData": got.data, "versionId": got.version_id, "createTime": got.create_time},
        got.data,
    )


@secret.command("update-desc")
@NAME
@click.option("--description", help="The new description; none removes it.")
@kms_command
def update_desc(opts: Options, secret_name: str, description: str | None) -> None:
    """Change (or remove) a secret's description."""
    with opts.client() as client:
        client.update_secret_description(secret_name, description)
    opts.emit({"secretName": secret_name, "description": description}, f"updated the description of {secret_name}")


@secret.command("versions")
@NAME
@kms_command
def versions(opts: Options, secret_name: str) -> None:
    """List a secret's versions."""
    with opts.client() as client:
        got = client.list_secret_version_ids(secret_name)
    data = {
        "secretName": got.name,
        "totalCount": got.total_count,
        "versionIds": [{"versionId": v.version_id, "createTime": v.create_time} for v in got.versions],
    }
    opts.emit(
        data, lambda: table(("VERSION", "CREATED"), ((str(v.version_id), when(v.create_time)) for v in got.versions))
    )


@secret.command("list")
@click.option("--name", "secret_name", help="Only this secret.")
@kms_command
def list_secrets(opts: Options, secret_name: str | None) -> None:
    """List secrets (those pending deletion too)."""
    with opts.client() as client:
        found = client.list_secrets(secret_name)
    data = [
        {
            "secretName": s.name,
            "description": s.description,
            "createTime": s.create_time,
            "plannedDeleteTime": s.planned_delete_time,
        }
        for s in found
    ]
    opts.emit(
        data,
        lambda: table(
            ("NAME", "CREATED", "DELETION", "DESCRIPTION"),
            (
                (
                    s.name,
                    when(s.create_time),
                    when(s.planned_delete_time) if s.pending_deletion else "-",
                    s.description or "",
                )
                for s in found
            ),
        ),
    )


@secret.command("describe")
@NAME
@kms_command
def describe(opts: Options, secret_name: str) -> None:
    """Show a secret's metadata."""
    with opts.client() as client:
        d = client.describe_secret(secret_name)
    data = {
        "secretName": d.name,
        "description": d.description,
        "createTime": d.create_time,
        "plannedDeleteTime": d.planned_delete_time,
        "rotationInterval": d.rotation_interval,
        "lastRotationDate": d.last_rotation_date,
        "nextRotationDate": d.next_rotation_date,
    }
    lines = [
        f"name:              {d.name}",
        f"description:       {d.description or '-'}",
        f"created:           {when(d.create_time)}",
        f"planned deletion:  {when(d.planned_delete_time)}",
        f"rotation interval: {d.rotation_interval or '-'}",
        f"next rotation:     {when(d.next_rotation_date)}",
    ]
    opts.emit(data, "\n".join(lines))


@secret.command("delete")
@NAME
@click.option("--recovery-days", type=click.IntRange(1, 365), help="Days it can still be restored (default 30).")
@click.option("--force", is_flag=True, help="Delete now, with every version: it cannot be restored.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --force).")
@kms_command
def delete(opts: Options, secret_name: str, recovery_days: int | None, force: bool, yes: bool) -> None:
    """Schedule a secret's deletion (or, with --force, delete it now)."""
    if force and recovery_days is not None:
        raise click.UsageError("--force and --recovery-days exclude each other")
    if force and not yes:
        click.confirm(f"Delete secret {secret_name} and every version of it now?", abort=True, err=True)
    with opts.client() as client:
        client.delete_secret(secret_name, recovery_period=recovery_days, force=force)
    human = f"deleted {secret_name}" if force else f"{secret_name} is scheduled for deletion (restore cancels it)"
    opts.emit({"secretName": secret_name, "forced": force, "recoveryDays": recovery_days}, human)


@secret.command("restore")
@NAME
@kms_command
def restore(opts: Options, secret_name: str) -> None:
    """Cancel a secret's scheduled deletion."""
    with opts.client() as client:
        client.restore_secret(secret_name)
    opts.emit({"secretName": secret_name, "restored": True}, f"restored {secret_name}")
