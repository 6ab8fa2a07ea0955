"""``ehsm-kms admin ...`` on the node: apps (list, show, revoke, restore, rotate the APIKey), the admin credential,
the audit log (verify, export), and the domain key (rotate-dk in single mode; rewrap, and rewrap --check).

Commands that only read or change store rows work on the store directly. ``rotate-apikey`` and
``reset-admin-credential`` need the core (it makes the new secret), so they open the domain key like ``serve``
does; ``rotate-apikey`` also needs the admin key (prompted hidden, or ``--admin-key file:<path>|env:<VAR>``) and
signs its request with it, as a remote admin would.

Every change is written to the audit log (client ``cli``) by :func:`_audited`: the outcome record after it (a
failed write makes the command fail) and, with the node's ``audit_fail_closed``, a request record before it; when
that one cannot be written the command is refused (exit code 7, ``audit log unavailable``) and nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ehsm_kms import config, errors

if TYPE_CHECKING:
    from ehsm_kms.service.audit_jobs import AdminChange

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
    fn = click.option("--dkeycache-socket", help="The dkeycache's Unix socket (cluster mode).")(fn)
    fn = click.option("--run-mode", type=click.Choice(config.RUN_MODES), help="single (default) or cluster.")(fn)
    fn = click.option("--core-mode", type=click.Choice(config.CORE_MODES), help="isolated (default) or inprocess.")(fn)
    fn = click.option("--allow-file-sealer", is_flag=True, default=None, help="Allow the file sealer (dev).")(fn)
    fn = click.option("--pkcs11-token", help="PKCS#11 token label (pkcs11 sealer).")(fn)
    fn = click.option("--pkcs11-module", help="PKCS#11 module path (pkcs11 sealer).")(fn)
    fn = click.option("--sealer-secret", help="Passphrase/PIN source: file:<path>, env:<VAR>, prompt.")(fn)
    fn = click.option("--sealer-tcti", help="The TPM of the tpm2 sealer.")(fn)
    fn = click.option("--sealer", type=click.Choice(config.SEALERS), help="How the DK is sealed.")(fn)
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


def _with_node(settings: config.Settings, work: Callable[[Any], Awaitable[T]], *, ready_timeout: float = 30.0) -> T:
    from ehsm_kms.cli.serve import _secret_for
    from ehsm_kms.server.assemble import build_node

    secret = _secret_for(settings)

    async def run() -> T:
        node = await build_node(settings, secret=secret)
        try:
            # Cluster mode: the core may still be asking the dkeycache for the domain key.
            if not await node.core.wait_ready(ready_timeout):
                raise errors.CoreUnavailable(f"the core got no domain key within {ready_timeout:.0f} s")
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


async def _audited(
    settings: config.Settings,
    store: Any,
    change: AdminChange,
    make: Callable[[], Awaitable[T]],
    made_subject: Callable[[T], str] | None = None,
) -> T:
    """Run ``make`` (the change) between its audit records; ``change`` is an :class:`~ehsm_kms.service.
    audit_jobs.AdminChange`, ``made_subject`` names what the change made when the request could not (a new admin id)."""
    from ehsm_kms.service import audit_jobs

    if settings.audit_fail_closed:
        await audit_jobs.admin_ahead(store, change, _now())  # raises AuditUnavailable: nothing done
    try:
        result = await make()
    except errors.EhsmError as exc:
        if settings.audit_fail_closed:  # the request record's outcome; the command's own error is what matters
            with contextlib.suppress(Exception):
                await audit_jobs.admin_event(store, change, _now(), error=exc)
        raise
    await audit_jobs.admin_event(store, change, _now(), subject=made_subject(result) if made_subject else None)
    return result


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
        issue_enroll_token,
        verify_audit,
        export_audit,
        rotate_dk,
        rewrap,
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
    from ehsm_kms.service import admin, audit_jobs

    settings = _settings(config_file, overrides)

    async def work(store: Any) -> dict[str, Any]:
        change = audit_jobs.AdminChange(action, "-", appid)
        return await _audited(settings, store, change, lambda: admin.set_app_state(store, appid, state))

    _echo_json(_with_store(settings, work))


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
    from ehsm_kms.service import admin, audit_jobs

    settings = _settings(config_file, overrides)
    key = _admin_key(admin_key_from)

    async def work(node: Any) -> str:
        cred = await node.store.get_admin_credential()
        if cred is None:
            raise errors.AdminAuthError("this store has no admin credential yet (start the server once)")

        async def rotate() -> str:
            req = admin.signed_admin_request(cred.admin_id, key, {"appid": appid}, node.clock_ms())
            app_cred = await admin.authenticate(node, req)
            apikey: str = await admin.rotate_apikey(node, req, app_cred, appid)
            return apikey

        change = audit_jobs.AdminChange("admin rotate-apikey", cred.admin_id, appid)
        return await _audited(settings, node.store, change, rotate)

    apikey = _with_node(settings, work)
    click.echo(f"appid:  {appid}")
    click.echo(f"apikey: {apikey}")


@click.command("reset-admin-credential")
@_store_options
@_core_options
def reset_admin_credential(config_file: str | None, **overrides: Any) -> None:
    """Make a new admin credential and print it (once); the old one stops working."""
    from ehsm_kms.service import admin, audit_jobs

    settings = _settings(config_file, overrides)

    async def work(node: Any) -> tuple[str, str]:
        old = await node.store.get_admin_credential()  # the request names the credential it replaces
        change = audit_jobs.AdminChange("admin reset-admin-credential", "-", old.admin_id if old else "-")
        return await _audited(
            settings, node.store, change, lambda: admin.reset_admin_credential(node), lambda made: made[0]
        )

    admin_id, admin_key = _with_node(settings, work)
    click.echo(admin.banner(admin_id, admin_key))


@click.command("issue-enroll-token")
@_store_options
@click.option("--ttl-hours", type=click.IntRange(1, 24 * 30), default=24, show_default=True)
def issue_enroll_token(ttl_hours: int, config_file: str | None, **overrides: Any) -> None:
    """Print a one-time enrollment token (for enroll_mode=token)."""
    from ehsm_kms.service import audit_jobs
    from ehsm_kms.service.apps import issue_enroll_token as issue

    settings = _settings(config_file, overrides)

    async def work(store: Any) -> str:
        change = audit_jobs.AdminChange("admin issue-enroll-token", "-", "")  # never the token
        return await _audited(settings, store, change, lambda: issue(store, _now(), ttl_hours * 3600 * 1000))

    click.echo(_with_store(settings, work))


# ---------------------------------------------------------------- the audit log
@click.command("verify-audit")
@click.option("--file", "from_file", type=click.Path(exists=True, dir_okay=False), help="Verify an export instead.")
@_store_options
def verify_audit(from_file: str | None, config_file: str | None, **overrides: Any) -> None:
    """Check the audit log's hash chain; say where it breaks (exit code 1) if a record was removed or changed."""
    from ehsm_kms.service import audit_chain
    from ehsm_kms.storage.audit_base import AuditRecord

    if from_file:
        with open(from_file, encoding="utf-8") as lines:
            records = (AuditRecord.from_json(json.loads(line)) for line in lines if line.strip())
            report = audit_chain.verify_records(records)
    else:
        report = _with_store(_settings(config_file, overrides), audit_chain.verify_store)
    span = f"seq {report.first_seq}..{report.last_seq}" if report.records else "no records"
    if report.intact:
        click.echo(f"audit chain intact: {report.records} records ({span}), head hash {report.last_hash.hex()}")
    else:
        click.echo(f"audit chain BROKEN: {report.records} records ({span}); {len(report.breaks)} break(s):")
        for brk in report.breaks:
            click.echo(f"  chain breaks at {brk}")
    for line in audit_chain.dangling_lines(report):  # requests without an outcome: reported, not a break
        click.echo(line)
    if not report.intact:
        sys.exit(errors.EXIT_GENERIC)


@click.command("export-audit")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@click.option("--after-seq", type=click.IntRange(0), default=0, show_default=True, help="Only records after this.")
@_store_options
def export_audit(output: str | None, after_seq: int, config_file: str | None, **overrides: Any) -> None:
    """Write the audit log as JSON lines (one record per line, in chain order, hashes in hex)."""
    from ehsm_kms.service import audit_chain

    async def work(store: Any) -> int:
        out = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115 (closed below)
        count = 0
        try:
            async for rec in audit_chain.stored_records(store, after_seq):
                out.write(json.dumps(rec.as_json(), separators=(",", ":"), sort_keys=True) + "\n")
                count += 1
        finally:
            if output:
                out.close()
        return count

    count = _with_store(_settings(config_file, overrides), work)
    if output:
        click.echo(f"{count} records written to {output}", err=True)


# ---------------------------------------------------------------- the domain key
@click.command("rotate-dk")
@click.option("--admin-key", "admin_key_from", help="file:<path>, env:<VAR> or prompt (default).")
@_store_options
@_core_options
def rotate_dk(admin_key_from: str | None, config_file: str | None, **overrides: Any) -> None:
    """Single mode: add a new domain-key version, sealed and saved; new blobs are wrapped with it.

    Nodes on this data directory pick it up within dk_refresh_interval_ms, or as soon as they meet a blob wrapped
    with it. Then run ``ehsm-kms admin rewrap`` to move the existing blobs to it. In cluster mode the dkeyserver
    rotates the domain key instead.
    """
    from ehsm_kms.core.ringsource import CLUSTER_ROTATION
    from ehsm_kms.service import audit_jobs
    from ehsm_kms.service import rewrap as dk_rewrap

    settings = _settings(config_file, overrides)
    if settings.run_mode == "cluster":
        raise errors.ConfigError(CLUSTER_ROTATION)
    key = _admin_key(admin_key_from)

    async def work(node: Any) -> dict[str, Any]:
        cred = await node.store.get_admin_credential()
        if cred is None:
            raise errors.AdminAuthError("this store has no admin credential yet (start the server once)")
        change = audit_jobs.AdminChange("admin rotate-dk", cred.admin_id, "domain-key")
        return await _audited(
            settings,
            node.store,
            change,
            lambda: dk_rewrap.rotate_dk(node, cred.admin_id, key),
            lambda made: f"dk-version-{made['dk_version']}",
        )

    made = _with_node(settings, work)
    click.echo(f"domain key rotated: version {made['previous']} -> {made['dk_version']} (versions {made['versions']})")
    click.echo("now run: ehsm-kms admin rewrap")


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counts.items())


@click.command("rewrap")
@click.option("--check", is_flag=True, help="Only count the blobs under older DK versions; exit 1 if there are any.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=200, show_default=True, help="Blobs per batch.")
@click.option("--pause-ms", type=click.IntRange(0), default=0, show_default=True, help="Pause between batches.")
@click.option("--dk-version", type=click.IntRange(1), help="With --check: count against this DK version (no core).")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@_store_options
@_core_options
def rewrap(
    check: bool,
    batch_size: int,
    pause_ms: int,
    dk_version: int | None,
    quiet: bool,
    config_file: str | None,
    **overrides: Any,
) -> None:
    """Rewrap every DK-wrapped blob (CMK versions, APIKeys, default secret keys, the admin credential, pending
    imports) to the current domain-key version, online and resumably (a run stopped midway is simply run again).

    Progress goes to standard error; the summary to standard output. Exit code 1 when blobs are left under older
    versions (or, with --check, when there are any).
    """
    from ehsm_kms.service import audit_jobs
    from ehsm_kms.service import rewrap as dk_rewrap

    settings = _settings(config_file, overrides)
    if dk_version is not None and not check:
        raise errors.ConfigError("--dk-version goes with --check")
    if check:
        if dk_version is not None:
            version = dk_version
            counts = _with_store(settings, lambda store: store.count_stale_blobs(version))
        else:

            async def count(node: Any) -> tuple[int, dict[str, int]]:
                current = await dk_rewrap.current_dk_version(node)
                return current, await dk_rewrap.stale_counts(node, current)

            version, counts = _with_node(settings, count)
        left = sum(counts.values())
        click.echo(f"{left} blob(s) under DK versions other than {version} ({_summary(counts)})")
        if left:
            sys.exit(errors.EXIT_GENERIC)
        return

    def progress(report: dk_rewrap.RewrapReport, kind: str) -> None:
        if not quiet:
            click.echo(f"rewrap: batch {report.batches}: {kind} {report.rewrapped[kind]} done", err=True)

    async def work(node: Any) -> dk_rewrap.RewrapReport:
        change = audit_jobs.AdminChange("admin rewrap", "-", "domain-key")
        return await _audited(
            settings,
            node.store,
            change,
            lambda: dk_rewrap.rewrap_all(node, batch_size=batch_size, pause_s=pause_ms / 1000, progress=progress),
            lambda report: f"dk-version-{report.dk_version}",
        )

    report = _with_node(settings, work)
    click.echo(
        f"rewrapped {report.total} blob(s) to DK version {report.dk_version} ({_summary(report.rewrapped)}); "
        f"changed meanwhile {report.changed_meanwhile}; failed {len(report.failed)}; "
        f"left under older versions {sum(report.remaining.values())}"
    )
    for name in report.failed:
        click.echo(f"  does not open under its row: {name}")
    if not report.complete:
        sys.exit(errors.EXIT_GENERIC)
