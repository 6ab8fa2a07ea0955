"""Putting a node together from Settings: the store, the core (isolated or in-process), the app."""

from __future__ import annotations

import logging

from ehsm_kms.config import Settings
from ehsm_kms.core.coreconfig import CoreConfig
from ehsm_kms.core.proxy import make_core
from ehsm_kms.server.app import KmsApp
from ehsm_kms.service import attestation
from ehsm_kms.service.node import Node
from ehsm_kms.storage import open_store

log = logging.getLogger("ehsm_kms.server")


def core_config(settings: Settings, *, secret: bytes | None = None) -> CoreConfig:
    source = settings.sealer_secret or None
    if source == "prompt":
        source = None
    return CoreConfig(
        sealer=settings.sealer,
        sealed_path=str(settings.sealed_path),
        secret_source=source,
        secret=secret,
        pkcs11_module=settings.pkcs11_module,
        pkcs11_token=settings.pkcs11_token,
        tpm2_tcti=settings.sealer_tcti,
        allow_file_sealer=settings.allow_file_sealer,
        run_mode=settings.run_mode,
        dkeycache_socket=settings.dkeycache_socket,
    )


async def build_node(settings: Settings, *, secret: bytes | None = None) -> Node:
    """The node, its store migrated and its core started. In cluster mode the core may still be waiting for the
    domain key when this returns (``node.core.ready``): the server answers /healthz meanwhile, /readyz says 503."""
    settings.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(settings.store)
    await store.migrate()
    core = make_core(
        core_config(settings, secret=secret),
        isolated=settings.core_mode == "isolated",
        refresh_interval_s=settings.dk_refresh_interval_ms / 1000,
    )
    try:
        await core.start()
    except BaseException:
        await store.close()
        raise
    return attestation.configure(Node(store, core, key_cache_ttl_ms=settings.key_cache_ttl_ms), settings)


def build_app(settings: Settings, *, secret: bytes | None = None) -> KmsApp:
    async def factory() -> Node:
        return await build_node(settings, secret=secret)

    return KmsApp(
        factory,
        enroll_mode=settings.effective_enroll_mode,
        scheduler_interval_s=settings.scheduler_interval_ms / 1000,
        audit_fail_closed=settings.audit_fail_closed,
        access_log=settings.access_log,
    )
