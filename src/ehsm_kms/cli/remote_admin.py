"""``ehsm-kms remote-admin ...``: the admin actions over the wire, signed with the admin credential.

``ehsm-kms admin ...`` runs on the node against its store; ``remote-admin`` runs anywhere the node is reachable and
sends AdminListApps, AdminShowApp, AdminRevokeApp, AdminRestoreApp, AdminRotateApiKey and AdminIssueEnrollToken.
The admin id comes from ``--admin-id`` or ``EHSM_KMS_ADMIN_ID``; the admin key from ``--admin-key-file`` (``-``:
standard input), ``EHSM_KMS_ADMIN_KEY``, or a hidden prompt, never from the command line. The server URL and TLS
options are those of every client command (``--url``, ``--profile``, ``--ca-bundle`` ...).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from ehsm_kms.cli import profiles
from ehsm_kms.cli.options import OPTION_TABLE, Options, table, when
from ehsm_kms.client import AdminClient, AppInfo
from ehsm_kms.client._base import ADMIN_ID_ENV, ADMIN_KEY_ENV, env_first
from ehsm_kms.client.errors import CredentialsMissing

_SERVER_OPTIONS = tuple(option for name, option in OPTION_TABLE.items() if name not in ("appid", "apikey_file"))
_ADMIN_OPTIONS = (
    click.option("--admin-id", help="The admin id (admin-<uuid>) [env EHSM_KMS_ADMIN_ID]."),
    click.option(
        "--admin-key-file",
        type=click.Path(dir_okay=False, allow_dash=True),
        help="File holding the admin key ('-': standard input) [env EHSM_KMS_ADMIN_KEY]; else a hidden prompt.",
    ),
)


def _admin_client(opts: Options, admin_id: str | None, admin_key_file: str | None) -> AdminClient:
    s = opts.settings(apikey=False)
    if not s["url"]:
        raise CredentialsMissing("no server URL: give --url, set EHSM_KMS_URL, or use a profile")
    ident = admin_id or env_first(ADMIN_ID_ENV)
    if not ident:
        raise CredentialsMissing("no admin id: give --admin-id or set EHSM_KMS_ADMIN_ID")
    key = profiles.read_secret_file(admin_key_file) if admin_key_file else env_first(ADMIN_KEY_ENV)
    if not key:
        if not sys.stdin.isatty():
            raise CredentialsMissing("no admin key: give --admin-key-file or set EHSM_KMS_ADMIN_KEY")
        key = click.prompt("Admin key", hide_input=True, err=True)
    if s["insecure"]:
        click.echo("warning: TLS certificate verification is off", err=True)
    return AdminClient(
        s["url"], ident, key, ca_bundle=s["ca_bundle"] or "", insecure=bool(s["insecure"]), timeout=opts.timeout
    )


def admin_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Connection and output options, and the admin credential; the command receives an AdminClient."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        admin_id, key_file = kwargs.pop("admin_id"), kwargs.pop("admin_key_file")
        opts = Options(
            url=kwargs.pop("url"),
            appid=None,
            apikey_file=None,
            profile=kwargs.pop("profile"),
            ca_bundle=kwargs.pop("ca_bundle"),
            insecure=kwargs.pop("insecure"),
            timeout=kwargs.pop("timeout"),
            as_json=kwargs.pop("as_json"),
        )
        with _admin_client(opts, admin_id, key_file) as client:
            return fn(opts, client, *args, **kwargs)

    for option in reversed(_ADMIN_OPTIONS):
        wrapper = option(wrapper)
    for option in reversed(_SERVER_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def _row(app: AppInfo) -> dict[str, Any]:
    row: dict[str, Any] = {"appid": app.appid, "state": app.state, "createdDate": app.created_date}
    if app.keys is not None:
        row["keys"] = app.keys
    return row


def _show(opts: Options, app: AppInfo) -> None:
    keys = "" if app.keys is None else f"\nkeys:    {app.keys}"
    opts.emit(_row(app), f"appid:   {app.appid}\nstate:   {app.state}\ncreated: {when(app.created_date)}{keys}")


@click.group("remote-admin")
def remote_admin() -> None:
    """Administer apps over the wire with the admin credential (on the node itself: 'ehsm-kms admin')."""


@remote_admin.command("list-apps")
@admin_command
def list_apps(opts: Options, client: AdminClient) -> None:
    """List every app."""
    apps = client.list_apps()
    opts.emit(
        [_row(a) for a in apps],
        lambda: table(("APPID", "STATE", "CREATED"), ((a.appid, a.state, when(a.created_date)) for a in apps)),
    )


@remote_admin.command("show-app")
@click.argument("appid")
@admin_command
def show_app(opts: Options, client: AdminClient, appid: str) -> None:
    """Show one app and how many keys it has."""
    _show(opts, client.show_app(appid))


@remote_admin.command("revoke-app")
@click.argument("appid")
@admin_command
def revoke_app(opts: Options, client: AdminClient, appid: str) -> None:
    """Refuse every request of the app from now on ('app revoked'); its keys are kept."""
    _show(opts, client.revoke_app(appid))


@remote_admin.command("restore-app")
@click.argument("appid")
@admin_command
def restore_app(opts: Options, client: AdminClient, appid: str) -> None:
    """Let a revoked app in again."""
    _show(opts, client.restore_app(appid))


@remote_admin.command("rotate-apikey")
@click.argument("appid")
@admin_command
def rotate_apikey(opts: Options, client: AdminClient, appid: str) -> None:
    """Give the app a new APIKey and print it (once); the old one stops working."""
    made = client.rotate_apikey(appid)
    opts.emit({"appid": made.appid, "apikey": made.apikey}, f"appid:  {made.appid}\napikey: {made.apikey}")


@remote_admin.command("issue-enroll-token")
@click.option("--ttl-hours", type=click.IntRange(1, 720), help="Validity (server default 24 hours).")
@admin_command
def issue_enroll_token(opts: Options, client: AdminClient, ttl_hours: int | None) -> None:
    """Print a one-time enrollment token (for a server in enroll_mode=token)."""
    made = client.issue_enroll_token(ttl_hours)
    opts.emit({"token": made.token, "expireTime": made.expire_time}, made.token)
