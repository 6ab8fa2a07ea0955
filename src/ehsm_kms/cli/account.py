"""``ehsm-kms enroll`` and ``ehsm-kms profile add|list|remove``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ehsm_kms import config
from ehsm_kms.cli import profiles
from ehsm_kms.cli.options import Options, kms_command, table

ENROLL_TOKEN_ENV = "EHSM_KMS_ENROLL_TOKEN"


@click.command()
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help=f"File holding a one-time enrollment token ('-': standard input) [env {ENROLL_TOKEN_ENV}].",
)
@click.option("--save-profile", "save_as", help="Store the new app's credentials in this profile (mode 0600).")
@click.option(
    "--attest",
    "policy_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Enroll only if the node's evidence, bound to this TLS connection, verifies against this policy "
    "(.toml or .json; docs/attestation.md). Needs https://.",
)
@kms_command
def enroll(opts: Options, token_file: str | None, save_as: str | None, policy_file: str | None) -> None:
    """Enroll a new app: prints its appid and APIKey, or stores them in a profile."""
    if save_as is not None:
        profiles.check_name(save_as)
    token = profiles.read_secret_file(token_file) if token_file else config.env_value(ENROLL_TOKEN_ENV)
    settings = opts.settings(apikey=False)
    with opts.client(credentials=False) as client:
        made = client.enroll(token or None, attest=Path(policy_file) if policy_file else None)
    attested: dict[str, Any] = {}
    note = ""
    if made.attestation is not None:
        found = made.attestation
        attested = {"attestation": {"kind": found.kind, "status": found.status, **found.measurements}}
        note = f"attested: {found.kind} {found.status}\n"
    if save_as is None:
        opts.emit(
            {"appid": made.appid, "apikey": made.apikey, **attested},
            f"{note}appid:  {made.appid}\napikey: {made.apikey}",
        )
        return
    path = profiles.put(
        profiles.Profile(
            name=save_as,
            url=settings["url"],
            appid=made.appid,
            apikey=made.apikey,
            ca_bundle=settings["ca_bundle"] or None,
            insecure=bool(settings["insecure"]),
        )
    )
    opts.emit(
        {"appid": made.appid, "profile": save_as, "config": str(path), **attested},
        f"{note}appid:  {made.appid}\nsaved to profile {save_as!r} in {path}",
    )


@click.group()
def profile() -> None:
    """Named servers and credentials, kept in the user's config directory."""


@profile.command("add")
@click.argument("name")
@click.option("--url", required=True, help="Server URL.")
@click.option("--appid", required=True, help="App id.")
@click.option(
    "--apikey-file",
    type=click.Path(dir_okay=False),
    help="Read the APIKey from this file each time (it is not copied). Default: prompt for it (or read it from "
    "standard input) and store it.",
)
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True), help="CA certificates (PEM).")
@click.option("--insecure", is_flag=True, help="Do not verify the server's TLS certificate.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def add(
    name: str, url: str, appid: str, apikey_file: str | None, ca_bundle: str | None, insecure: bool, as_json: bool
) -> None:
    """Add (or replace) the profile NAME."""
    profiles.check_name(name)
    ca = str(Path(ca_bundle).resolve()) if ca_bundle else None
    if apikey_file is not None:
        entry = profiles.Profile(name, url, appid, None, str(Path(apikey_file).resolve()), ca, insecure)
    else:
        # A hidden prompt on a terminal; a script pipes the APIKey in (it is never a command-line argument).
        apikey = click.prompt("APIKey", hide_input=True, err=True) if sys.stdin.isatty() else sys.stdin.readline()
        apikey = apikey.strip()
        if not apikey:
            raise click.UsageError("the APIKey is empty")
        entry = profiles.Profile(name, url, appid, apikey, None, ca, insecure)
    path = profiles.put(entry)
    if as_json:
        click.echo(json.dumps({"profile": name, "config": str(path)}))
    else:
        click.echo(f"saved profile {name!r} in {path}")


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_profiles(as_json: bool) -> None:
    """List the profiles (never their APIKeys)."""
    found = profiles.load()
    data = [
        {
            "name": p.name,
            "url": p.url,
            "appid": p.appid,
            "apikey": p.apikey_source,
            "ca_bundle": p.ca_bundle,
            "insecure": p.insecure,
        }
        for p in sorted(found.values(), key=lambda p: p.name)
    ]
    if as_json:
        click.echo(json.dumps(data))
        return
    table(
        ("NAME", "URL", "APPID", "APIKEY", "TLS"),
        (
            (
                p.name,
                p.url or "-",
                p.appid or "-",
                p.apikey_source,
                "insecure" if p.insecure else (f"ca {p.ca_bundle}" if p.ca_bundle else "verified"),
            )
            for p in sorted(found.values(), key=lambda p: p.name)
        ),
    )


@profile.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove the profile NAME."""
    found = profiles.load()
    if name not in found:
        raise click.UsageError(f"no profile named {name!r}")
    del found[name]
    path = profiles.save(found)
    click.echo(f"removed profile {name!r} from {path}")
