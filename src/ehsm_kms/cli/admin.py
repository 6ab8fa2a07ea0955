"""``ehsm-kms admin ...`` on the node: apps (list, show, revoke, restore, rotate the APIKey), the admin credential,
and the audit log (verify, export).

Commands that only read or change store rows work on the store directly. ``rotate-apikey`` and
``reset-admin-credential`` need the core (it makes the new secret), so they open the domain key like ``serve``
does; ``rotate-apikey`` also needs the admin key (prompted hidden, or ``--admin-key file:<path>|env:<VAR>``) and
signs its request with it, as a remote admin would. Changes are written to the audit log (client ``cli``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ehsm_kms import config, errors

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _now() -> int:
    return int(time.time() * 1000)


def _store_options(fn: F) -> F:
    fn = click.option("--store-url", help="sqlite:///path or postgresql://... (default: SQLite in the data dir).")(fn)
    fn = click.option("--data-dir", help="Data directory (default: the per-user data directory).")(fn)
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file.")(fn)
    return fn


def _core_options(fn: F) -> F:
    fn = click.option("--core-mode", type=click.Choice(config.CORE_MODES), help="isolated (default) or inprocess.")(fn)
    fn = click.option("--allow-file-sealer", is_flag=True, default=None, help="Allow the file sealer (dev).")(fn)
    fn = click.option("--pkcs11-token", help="PKCS#11 token label (pkcs11 sealer).")(fn)
    fn = click.option("--pkcs11-module", help="PKCS#11 module path (pkcs11 sealer).")(fn)
    fn = click.option("--sealer-secret", help="Passphrase/PIN source: file:<path>, env:<VAR>, prompt.")(fn)
    fn = click.option("--sealer", type=click.Choice(["passphrase", "pkcs11", "file"]), help="How the DK is sealed.")(fn)
    return fn


def _settings(config_file: str | None, overrides: dict[str, Any]) -> config.Settings:
    return config.load(config_file=config_file, overrides=overrides)


def _with_store(settings: config.Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from ehsm_kms.storage import open_store

    async def run() -> T:
        settings.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = open_store(settings.store)
        try:
            await store.migrate()
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _with_node(settings: config.Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from ehsm_kms.cli.serve import _secret_for
    from ehsm_kms.server.assemble import build_node

    secret = _secret_for(settings)

    async def run() -> T:
        node = await build_node(settings, secret=secret)
        try:
            return await work(node)
        finally:
            await node.core.close()
            await node.store.close()

    return asyncio.run(run())


def _admin_key(source: str | None) -> str:
    """The admin key from ``file:<path>``, ``env:<VAR>``, or a hidden prompt; never a command-line value."""
    if source and source.startswith("file:"):
        try:
            return Path(source[5:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise errors.ConfigError(f"cannot read the admin key from {source[5:]}: {exc.strerror}") from None
    if source and source.startswith("env:"):
        value = config.env_value(source[4:])
        if not value:
            raise errors.ConfigError(f"the environment variable {source[4:]} holds no admin key")
        return value.strip()
    if source not in (None, "", "prompt"):
        raise errors.ConfigError("--admin-key is file:<path>, env:<VAR> or prompt")
    if not sys.stdin.isatty():
        raise errors.ConfigError("the admin key is needed: give --admin-key file:<path> or env:<VAR>, or a terminal")
    key: str = click.prompt("Admin key", hide_input=True)
    return key.strip()


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def register(group: click.Group) -> None:
    for command in (
        list_apps,
        show_app,
        revoke_app,
        restore_app,
        rotate_apikey,
        reset_admin_credential,
        verify_audit,
        export_audit,
    ):
        group.add_command(command)


# ---------------------------------------------------------------- apps
@click.command("list-apps")
@_store_options
def list_apps(config_file: str | None, **overrides: Any) -> None:
    """List every enrolled app (appid, state, creation time)."""
    from ehsm_kms.service import admin

    _echo_json(_with_store(_settings(config_file, overrides), admin.list_apps))


@click.command("show-app")
@click.argument("appid")
@_store_options
def show_app(appid: str, config_file: str | None, **overrides: Any) -> None:
    """Show one app and how many keys it has."""
    from ehsm_kms.service import admin

    _echo_json(_with_store(_settings(config_file, overrides), lambda store: admin.show_app(store, appid)))


def _set_state(appid: str, state: str, action: str, config_file: str | None, overrides: dict[str, Any]) -> None:
    from ehsm_kms.service import admin, audit

    async def work(store: Any) -> dict[str, Any]:
        info = await admin.set_app_state(store, appid, state)
        await audit.admin_event(store, action, "-", appid, _now())
        return info

    _echo_json(_with_store(_settings(config_file, overrides), work))


@click.command("revoke-app")
@click.argument("appid")
@_store_options
def revoke_app(appid: str, config_file: str | None, **overrides: Any) -> None:
    """Refuse every request of the app from now on ("app revoked"); its keys are kept."""
    _set_state(appid, "revoked", "admin revoke-app", config_file, overrides)


@click.command("restore-app")
@click.argument("appid")
@_store_options
def restore_app(appid: str, config_file: str | None, **overrides: Any) -> None:
    """Let a revoked app in again."""
    _set_state(appid, "active", "admin restore-app", config_file, overrides)


@click.command("rotate-apikey")
@click.argument("appid")
@click.option("--admin-key", "admin_key_from", help="file:<path>, env:<VAR> or prompt (default).")
@_store_options
@_core_options
def rotate_apikey(appid: str, admin_key_from: str | None, config_file: str | None, **overrides: Any) -> None:
    """Give the app a new APIKey and print it (once); the old one stops working."""
    from ehsm_kms.service import admin, audit

    settings = _settings(config_file, overrides)
    key = _admin_key(admin_key_from)

    async def work(node: Any) -> str:
        cred = await node.store.get_admin_credential()
        if cred is None:
            raise errors.AdminAuthError("this store has no admin credential yet (start the server once)")
        req = admin.signed_admin_request(cred.admin_id, key, {"appid": appid}, node.clock_ms())
        app_cred = await admin.authenticate(node, req)
        apikey = await admin.rotate_apikey(node, req, app_cred, appid)
        await audit.admin_event(node.store, "admin rotate-apikey", cred.admin_id, appid, _now())
        return apikey

    apikey = _with_node(settings, work)
    click.echo(f"appid:  {appid}")
    click.echo(f"apikey: {apikey}")


@click.command("reset-admin-credential")
@_store_options
@_core_options
def reset_admin_credential(config_file: str | None, **overrides: Any) -> None:
    """Make a new admin credential and print it (once); the old one stops working."""
    from ehsm_kms.service import admin, audit

    async def work(node: Any) -> tuple[str, str]:
        made = await admin.reset_admin_credential(node)
        await audit.admin_event(node.store, "admin reset-admin-credential", "-", made[0], _now())
        return made

    admin_id, admin_key = _with_node(_settings(config_file, overrides), work)
    click.echo(admin.banner(admin_id, admin_key))


# ---------------------------------------------------------------- the audit log
@click.command("verify-audit")
@click.option("--file", "from_file", type=click.Path(exists=True, dir_okay=False), help="Verify an export instead.")
@_store_options
def verify_audit(from_file: str | None, config_file: str | None, **overrides: Any) -> None:
    """Check the audit log's hash chain; say where it breaks (exit code 1) if a record was removed or changed."""
    from ehsm_kms.service import audit
    from ehsm_kms.storage.audit_base import AuditRecord

    if from_file:
        with open(from_file, encoding="utf-8") as lines:
            report = audit.verify_records(AuditRecord.from_json(json.loads(line)) for line in lines if line.strip())
    else:
        report = _with_store(_settings(config_file, overrides), audit.verify_store)
    span = f"seq {report.first_seq}..{report.last_seq}" if report.records else "no records"
    if report.intact:
        click.echo(f"audit chain intact: {report.records} records ({span}), head hash {report.last_hash.hex()}")
        return
    click.echo(f"audit chain BROKEN: {report.records} records ({span}); {len(report.breaks)} break(s):")
    for brk in report.breaks:
        click.echo(f"  chain breaks at {brk}")
    sys.exit(errors.EXIT_GENERIC)


@click.command("export-audit")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@click.option("--after-seq", type=click.IntRange(0), default=0, show_default=True, help="Only records after this.")
@_store_options
def export_audit(output: str | None, after_seq: int, config_file: str | None, **overrides: Any) -> None:
    """Write the audit log as JSON lines (one record per line, in chain order, hashes in hex)."""
    from ehsm_kms.service import audit

    async def work(store: Any) -> int:
        out = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115 (closed below)
        count = 0
        try:
            async for rec in audit.stored_records(store, after_seq):
                out.write(json.dumps(rec.as_json(), separators=(",", ":"), sort_keys=True) + "\n")
                count += 1
        finally:
            if output:
                out.close()
        return count

    count = _with_store(_settings(config_file, overrides), work)
    if output:
        click.echo(f"{count} records written to {output}", err=True)
