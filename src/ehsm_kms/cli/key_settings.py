"""``ehsm-kms key set-min-decrypt-version | set-rotation | set-description``: a key's settings (docs/beyond.md).

They join the ``key`` group of :mod:`ehsm_kms.cli.keys` when this module is imported (:mod:`.commands` does).
"""

from __future__ import annotations

import click

from ehsm_kms.cli.keys import KEYID, key
from ehsm_kms.cli.options import Options, kms_command, when


@key.command("set-min-decrypt-version")
@KEYID
@click.option("--version", "version", type=click.IntRange(min=1), required=True, help="Oldest version that decrypts.")
@kms_command
def set_min_decrypt_version(opts: Options, keyid: str, version: int) -> None:
    """Retire the versions below VERSION: their ciphertexts no longer decrypt (lower it again to undo)."""
    with opts.client() as client:
        got = client.set_min_decrypt_version(keyid, version)
    opts.emit({"keyid": keyid, "minDecryptVersion": got}, f"{keyid} decrypts from version {got}")


@key.command("set-rotation")
@KEYID
@click.option("--days", type=click.IntRange(0, 3650), required=True, help="Rotate every DAYS days; 0 turns it off.")
@kms_command
def set_rotation(opts: Options, keyid: str, days: int) -> None:
    """Rotate a key automatically every DAYS days (internal keys only)."""
    with opts.client() as client:
        got = client.update_key_rotation(keyid, days)
    data = {"keyid": got.keyid, "rotationPeriod": got.rotation_period, "nextRotationDate": got.next_rotation_date}
    human = (
        f"{got.keyid} rotates every {got.rotation_period} days; next at {when(got.next_rotation_date)}"
        if got.rotation_period
        else f"{got.keyid} rotates only when asked"
    )
    opts.emit(data, human)


@key.command("set-description")
@KEYID
@click.option("--description", default="", help="The new description (at most 4096 characters); omit to remove it.")
@kms_command
def set_description(opts: Options, keyid: str, description: str) -> None:
    """Set or remove a key's description."""
    with opts.client() as client:
        client.update_key_description(keyid, description or None)
    opts.emit(
        {"keyid": keyid, "description": description},
        f"{keyid}: description {'set' if description else 'removed'}",
    )
