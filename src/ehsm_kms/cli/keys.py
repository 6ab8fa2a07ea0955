"""``ehsm-kms key ...``: create, list, describe, rotate, enable, disable, delete and import keys; aliases."""

from __future__ import annotations

import click

from ehsm_kms.cli.options import KEYSPEC, KEYUSAGE, ORIGIN, PADDING, Options, kms_command, read_input, table, when

KEYID = click.option("--keyid", required=True, help="The key's id.")


@click.group()
def key() -> None:
    """Create, list, enable, disable, delete and import keys."""


@key.command("create")
@click.option("--keyspec", type=KEYSPEC, default="EH_AES_GCM_256", show_default=True, help="Key type.")
@click.option("--origin", type=ORIGIN, default="EH_INTERNAL_KEY", show_default=True, help="external: BYOK.")
@click.option("--keyusage", type=KEYUSAGE, help="Default: SIGN_VERIFY for EC and HMAC keys, else ENCRYPT_DECRYPT.")
@kms_command
def create(opts: Options, keyspec: str, origin: str, keyusage: str | None) -> None:
    """Create a key; prints its keyid."""
    with opts.client() as client:
        keyid = client.create_key(keyspec, origin, keyusage)
    opts.emit({"keyid": keyid}, keyid)


@key.command("list")
@kms_command
def list_keys(opts: Options) -> None:
    """List this app's keys."""
    with opts.client() as client:
        keys = client.list_keys()
    rows = [
        {
            "keyid": k.keyid,
            "keyspec": k.keyspec,
            "keyState": k.key_state,
            "creationDate": k.creation_date,
            "expireTime": k.expire_time,
            "alias": k.alias,
        }
        for k in keys
    ]

    def human() -> None:
        table(
            ("KEYID", "KEYSPEC", "STATE", "CREATED", "EXPIRES", "ALIAS"),
            (
                (
                    k.keyid,
                    k.keyspec,
                    "enabled" if k.enabled else "disabled",
                    when(k.creation_date),
                    when(k.expire_time),
                    k.alias,
                )
                for k in sorted(keys, key=lambda k: (k.creation_date or 0, k.keyid))
            ),
        )

    opts.emit(rows, human)


@key.command("enable")
@KEYID
@kms_command
def enable(opts: Options, keyid: str) -> None:
    """Enable a disabled key."""
    with opts.client() as client:
        client.enable_key(keyid)
    opts.emit({"keyid": keyid, "enabled": True}, f"enabled {keyid}")


@key.command("disable")
@KEYID
@kms_command
def disable(opts: Options, keyid: str) -> None:
    """Disable a key: every use of it fails until it is enabled again."""
    with opts.client() as client:
        client.disable_key(keyid)
    opts.emit({"keyid": keyid, "enabled": False}, f"disabled {keyid}")


@key.command("delete")
@KEYID
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@kms_command
def delete(opts: Options, keyid: str, yes: bool) -> None:
    """Delete a key. Data encrypted under it can never be decrypted again."""
    if not yes:
        click.confirm(f"Delete key {keyid}? Data encrypted under it will be lost", abort=True, err=True)
    with opts.client() as client:
        client.delete_key(keyid)
    opts.emit({"keyid": keyid, "deleted": True}, f"deleted {keyid}")


@key.command("delete-all")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@kms_command
def delete_all(opts: Options, yes: bool) -> None:
    """Delete every key of this app."""
    if not yes:
        click.confirm("Delete EVERY key of this app? Data encrypted under them will be lost", abort=True, err=True)
    with opts.client() as client:
        client.delete_all_keys()
    opts.emit({"deleted": True}, "deleted every key")


@key.command("public-key")
@KEYID
@kms_command
def public_key(opts: Options, keyid: str) -> None:
    """Print the PEM public key of an RSA, EC or SM2 key."""
    with opts.client() as client:
        pem = client.get_public_key(keyid)
    opts.emit({"keyid": keyid, "pubkey": pem}, pem.rstrip("\n"))


@key.command("import-params")
@KEYID
@click.option("--wrapping-keyspec", type=KEYSPEC, default="EH_RSA_2048", show_default=True)
@kms_command
def import_params(opts: Options, keyid: str, wrapping_keyspec: str) -> None:
    """BYOK step 1: a one-time RSA public key to wrap key material with, and the import token."""
    with opts.client() as client:
        params = client.get_parameters_for_import(keyid, wrapping_keyspec)
    opts.emit(
        {"keyid": keyid, "pubkey": params.pubkey, "importToken": params.import_token},
        f"{params.pubkey.rstrip()}\nimport token: {params.import_token}",
    )


@key.command("import")
@KEYID
@click.option(
    "--material-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The raw key (16, 24 or 32 bytes): wrapped here and imported (both BYOK steps).",
)
@click.option(
    "--wrapped-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Key material already wrapped with the public key of 'key import-params' (raw bytes).",
)
@click.option("--import-token", help="The token of 'key import-params' (with --wrapped-file).")
@click.option("--padding-mode", type=PADDING, default="EH_RSA_PKCS1_OAEP", show_default=True)
@click.option("--wrapping-keyspec", type=KEYSPEC, default="EH_RSA_2048", show_default=True)
@kms_command
def import_key(
    opts: Options,
    keyid: str,
    material_file: str | None,
    wrapped_file: str | None,
    import_token: str | None,
    padding_mode: str,
    wrapping_keyspec: str,
) -> None:
    """Import key material into a key created with --origin external."""
    if (material_file is None) == (wrapped_file is None):
        raise click.UsageError("give either --material-file or --wrapped-file (with --import-token)")
    with opts.client() as client:
        if material_file is not None:
            material = read_input(material_file)
            ok = client.import_key(keyid, material, wrapping_keyspec=wrapping_keyspec, padding_mode=padding_mode)
        else:
            if not import_token:
                raise click.UsageError("--wrapped-file needs --import-token")
            wrapped = read_input(wrapped_file)
            ok = client.import_key_material(keyid, wrapped, import_token, padding_mode=padding_mode)
    opts.emit({"keyid": keyid, "result": ok}, f"imported key material into {keyid}")


# ---------------------------------------------------------------- versions, description, scheduled deletion
@key.command("rotate")
@KEYID
@kms_command
def rotate(opts: Options, keyid: str) -> None:
    """Give a key a new primary version; older versions still decrypt."""
    with opts.client() as client:
        version = client.rotate_key(keyid)
    opts.emit({"keyid": keyid, "keyversion": version}, f"rotated {keyid}: version {version}")


@key.command("versions")
@KEYID
@kms_command
def versions(opts: Options, keyid: str) -> None:
    """List a key's versions."""
    with opts.client() as client:
        got = client.list_key_versions(keyid)
    rows = [
        {"keyversion": v.version, "creationDate": v.creation_date, "primary": v.primary, "retired": v.retired}
        for v in got.versions
    ]
    data = {
        "keyid": got.keyid,
        "primaryVersion": got.primary_version,
        "minDecryptVersion": got.min_decrypt_version,
        "list": rows,
    }

    def human() -> None:
        table(
            ("VERSION", "CREATED", "PRIMARY", "RETIRED"),
            (
                (str(v.version), when(v.creation_date), "yes" if v.primary else "", "yes" if v.retired else "")
                for v in got.versions
            ),
        )

    opts.emit(data, human)


@key.command("describe")
@KEYID
@kms_command
def describe(opts: Options, keyid: str) -> None:
    """Everything about one key, in any state."""
    with opts.client() as client:
        d = client.describe_key(keyid)
    data = {
        "keyid": d.keyid,
        "alias": d.alias,
        "description": d.description,
        "keyspec": d.keyspec,
        "keyusage": d.keyusage,
        "origin": d.origin,
        "keyState": d.key_state,
        "creationDate": d.creation_date,
        "expireTime": d.expire_time,
        "primaryVersion": d.primary_version,
        "minDecryptVersion": d.min_decrypt_version,
        "versions": list(d.versions),
        "rotationPeriod": d.rotation_period,
        "nextRotationDate": d.next_rotation_date,
        "deletionDate": d.deletion_date,
    }
    state = "pending deletion" if d.pending_deletion else "enabled" if d.enabled else "disabled"
    lines = [
        ("keyid", d.keyid),
        ("alias", d.alias or "-"),
        ("description", d.description or "-"),
        ("keyspec", d.keyspec),
        ("keyusage", d.keyusage),
        ("origin", d.origin),
        ("state", state),
        ("created", when(d.creation_date)),
        ("expires", when(d.expire_time)),
        ("versions", f"{', '.join(map(str, d.versions))} (primary {d.primary_version})"),
        ("decrypts from", str(d.min_decrypt_version)),
        ("rotation", f"every {d.rotation_period} days" if d.rotation_period else "manual"),
        ("next rotation", when(d.next_rotation_date)),
        ("deletion", when(d.deletion_date)),
    ]
    opts.emit(data, "\n".join(f"{k + ':':<15}{v}" for k, v in lines))


@key.command("schedule-deletion")
@KEYID
@click.option("--days", type=click.IntRange(7, 30), help="Days before the key is deleted (7-30; server default 30).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@kms_command
def schedule_deletion(opts: Options, keyid: str, days: int | None, yes: bool) -> None:
    """Make a key unusable now and delete it after the waiting period ('key cancel-deletion' undoes it)."""
    if not yes:
        click.confirm(f"Schedule key {keyid} for deletion?", abort=True, err=True)
    with opts.client() as client:
        got = client.schedule_key_deletion(keyid, pending_window_days=days)
    opts.emit(
        {"keyid": got.keyid, "deletionDate": got.deletion_date, "keyState": got.key_state},
        f"{got.keyid} will be deleted at {when(got.deletion_date)}",
    )


@key.command("cancel-deletion")
@KEYID
@kms_command
def cancel_deletion(opts: Options, keyid: str) -> None:
    """Cancel a scheduled deletion: the key is back in the state it had."""
    with opts.client() as client:
        client.cancel_key_deletion(keyid)
    opts.emit({"keyid": keyid, "pendingDeletion": False}, f"cancelled the deletion of {keyid}")


# ---------------------------------------------------------------- aliases
ALIAS = click.option("--alias", "alias_name", required=True, help="The alias (with or without 'alias/').")


@click.group()
def alias() -> None:
    """Name keys: an alias works wherever a keyid does, as alias/NAME."""


@alias.command("create")
@KEYID
@ALIAS
@kms_command
def alias_create(opts: Options, keyid: str, alias_name: str) -> None:
    """Give a key an alias (a key has at most one)."""
    with opts.client() as client:
        got = client.create_alias(keyid, alias_name)
    opts.emit({"alias": got.alias, "keyid": got.keyid}, f"alias/{got.alias} -> {got.keyid}")


@alias.command("update")
@KEYID
@ALIAS
@kms_command
def alias_update(opts: Options, keyid: str, alias_name: str) -> None:
    """Point an alias at another key."""
    with opts.client() as client:
        got = client.update_alias(keyid, alias_name)
    opts.emit({"alias": got.alias, "keyid": got.keyid}, f"alias/{got.alias} -> {got.keyid}")


@alias.command("delete")
@ALIAS
@kms_command
def alias_delete(opts: Options, alias_name: str) -> None:
    """Delete an alias (the key stays)."""
    with opts.client() as client:
        client.delete_alias(alias_name)
    opts.emit({"alias": alias_name, "deleted": True}, f"deleted alias {alias_name}")


@alias.command("list")
@kms_command
def alias_list(opts: Options) -> None:
    """List this app's aliases."""
    with opts.client() as client:
        got = client.list_aliases()
    opts.emit(
        [{"alias": a.alias, "keyid": a.keyid} for a in got],
        lambda: table(("ALIAS", "KEYID"), ((a.alias, a.keyid) for a in got)),
    )
