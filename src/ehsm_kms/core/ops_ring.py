"""Core operations on the domain-key ring: following rotations, rotating (single mode), and rewrapping blobs.

A core holds its ring in :class:`RingKeeper`, which knows the ring's source (:mod:`ehsm_kms.core.ringsource`). The
ring changes in three ways, always to a ring that extends the one held (:func:`~ehsm_kms.core.ringsource.extends`):

- ``ring_refresh``: the proxy asks for it at start (until the core has a ring: cluster mode waits for the
  dkeycache) and then every ``dk_refresh_interval_ms``;
- on demand: a call carrying a blob under a DK version the ring lacks (another node already wraps with a newer
  DK) makes the core look at its source once before it answers (at most once per :data:`ON_DEMAND_INTERVAL_S`,
  so a stream of such calls costs one fetch, not one each), so no request fails during a rotation;
- ``rotate_dk`` (single mode): a new version, saved through the sealer before it is used. It needs the admin's
  signature, with the payload ``{"rotate": "domain-key"}``, so an outer layer cannot rotate on its own.

``rewrap_blobs`` rewraps a batch to the current DK version. Each blob is opened with the binding of the row it comes
from (exactly as the operation that uses it would open it), so a blob moved to another row is refused (None in its
place), never rewrapped into a valid one. Nothing is revealed, so it needs no signature.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from ehsm_kms import errors
from ehsm_kms.core import keyblob
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.ops_admin import admin_binding, authenticate_admin
from ehsm_kms.core.registry import handler
from ehsm_kms.core.ringsource import RingSource, extends

if TYPE_CHECKING:
    from ehsm_kms.core.enclave import Enclave
    from ehsm_kms.core.protocol import Call

log = logging.getLogger("ehsm_kms.core")

ON_DEMAND_INTERVAL_S: Final = 1.0
ROTATE_PAYLOAD: Final = {"rotate": "domain-key"}
_BLOB_VERSION: Final = slice(5, 9)  # the DK version in a keyblob's header (keyblob module docstring)


class RingKeeper:
    """The core's ring source and the bookkeeping of on-demand refreshes. Core memory only."""

    def __init__(self, source: RingSource, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._clock = clock
        self._last_on_demand = -ON_DEMAND_INTERVAL_S
        self.refused = ""

    def first(self) -> DomainKeyRing | None:
        """The ring at start; in cluster mode None when the dkeycache has none yet (the proxy retries)."""
        if self.source.mode != "cluster":
            return self.source.first()  # single mode fails fast: a wrong passphrase stops the start
        try:
            return self.source.first()
        except errors.EhsmError as exc:
            log.warning("no domain key yet (%s); waiting for the dkeycache", exc.message)
            return None

    def refresh(self, enc: Enclave, reason: str) -> bool:
        """Look at the source and adopt its ring if it extends the one held; True when the ring changed."""
        new = self.source.latest()
        if new is None:
            return False
        held = enc.ring_or_none
        problem = extends(held, new)
        if problem is not None:
            if problem != self.refused:
                log.error("refused the domain-key ring from the %s source (%s): %s", self.source.mode, reason, problem)
            self.refused = problem
            return False
        self.refused = ""
        if held is not None and held == new:
            return False
        enc.set_ring(new)
        log.info("domain-key ring now at version %d (%s, versions %s)", new.current_version, reason, new.versions)
        return True

    def ensure(self, enc: Enclave, blobs: Iterable[bytes]) -> None:
        """Refresh once (rate-limited) when a blob names a DK version the ring does not hold."""
        ring = enc.ring_or_none
        if ring is None:
            return
        held = ring.versions
        wrapped = [b for b in blobs if len(b) >= keyblob.OVERHEAD and b[:4] == keyblob.MAGIC]
        if all(int.from_bytes(b[_BLOB_VERSION], "big") in held for b in wrapped):
            return
        now = self._clock()
        if now - self._last_on_demand < ON_DEMAND_INTERVAL_S:
            return
        self._last_on_demand = now
        try:
            self.refresh(enc, "a blob names a newer domain-key version")
        except errors.EhsmError as exc:
            log.warning("on-demand domain-key refresh failed: %s", exc.message)


def call_blobs(call: Call) -> list[bytes]:
    """Every blob a call carries where keyblobs travel: the app's APIKey, the keys, and bytes arguments."""
    blobs = [ref.blob for ref in call.keys]
    if call.app is not None:
        blobs.append(call.app.apikey_blob)
    blobs.extend(v for v in call.args.values() if isinstance(v, bytes))
    return blobs


def _status(enc: Enclave) -> dict[str, Any]:
    ring = enc.ring_or_none
    keeper = enc.keeper
    return {
        "ready": ring is not None,
        "dk_version": ring.current_version if ring is not None else 0,
        "versions": list(ring.versions) if ring is not None else [],
        "mode": keeper.source.mode if keeper is not None else "fixed",
        "refused": keeper.refused if keeper is not None else "",
    }


@handler("ring_status")
def ring_status(enc: Enclave, call: Call) -> dict[str, Any]:
    return _status(enc)


@handler("ring_refresh")
def ring_refresh(enc: Enclave, call: Call) -> dict[str, Any]:
    """Adopt the source's ring if it extends ours; CoreUnavailable while the source has none to give."""
    if enc.keeper is not None:
        try:
            changed = enc.keeper.refresh(enc, str(call.args.get("reason", "periodic")))
        except errors.CryptoError:
            raise errors.CoreUnavailable("the domain-key ring from the source does not open") from None
    else:
        changed = False
    return {**_status(enc), "changed": changed}


@handler("rotate_dk")
def rotate_dk(enc: Enclave, call: Call) -> dict[str, Any]:
    payload = authenticate_admin(enc, call)
    if payload != ROTATE_PAYLOAD:
        raise errors.AdminAuthError()
    if enc.keeper is None:
        raise errors.ConfigError("this core has no domain-key source to save a rotated ring to")
    previous = enc.ring.current_version
    ring = enc.keeper.source.rotate(enc.ring)  # saved through the sealer before any blob is wrapped with it
    enc.set_ring(ring)
    log.info("domain key rotated: version %d -> %d", previous, ring.current_version)
    return {**_status(enc), "previous": previous}


def _binding(item: dict[str, Any]) -> keyblob.Binding:
    from ehsm_kms.core.enclave import apikey_binding
    from ehsm_kms.core.ops_keys import _import_binding
    from ehsm_kms.core.ops_secrets import default_key_binding

    kind, keyid, appid = item.get("kind"), item.get("keyid"), item.get("appid")
    if not isinstance(keyid, str) or not isinstance(appid, str):
        raise errors.CryptoError()
    if kind == "cmk":
        fields = [item.get(name) for name in ("keyspec", "usage", "origin", "version")]
        numbers = [f for f in fields if isinstance(f, int)]
        if len(numbers) != len(fields):
            raise errors.CryptoError()
        return keyblob.Binding("cmk", keyid, appid, *numbers)
    if kind == "apikey":
        return apikey_binding(keyid)
    if kind == "secret-default-key":
        return default_key_binding(keyid)
    if kind == "admin":
        return admin_binding(keyid)
    if kind == "import":
        spec, version = item.get("keyspec"), item.get("version")
        if not isinstance(spec, int) or not isinstance(version, int):
            raise errors.CryptoError()
        return _import_binding(keyid, appid, spec, version)
    raise errors.CryptoError()


@handler("rewrap_blobs")
def rewrap_blobs(enc: Enclave, call: Call) -> dict[str, Any]:
    """``items``: [{kind, keyid, appid, keyspec, usage, origin, version, blob}]; ``blobs``: each rewrapped to the
    current DK version (unchanged if it already is), or None when it does not open under its row's binding."""
    items = call.args.get("items")
    if not isinstance(items, list):
        raise errors.CryptoError()
    if enc.keeper is not None:
        enc.keeper.ensure(enc, [i["blob"] for i in items if isinstance(i, dict) and isinstance(i.get("blob"), bytes)])
    ring = enc.ring
    out: list[bytes | None] = []
    for item in items:
        try:
            if not isinstance(item, dict) or not isinstance(item.get("blob"), bytes):
                raise errors.CryptoError()
            out.append(keyblob.rewrap(ring, _binding(item), item["blob"]))
        except errors.CryptoError:
            out.append(None)
    return {"dk_version": ring.current_version, "blobs": out}


__all__ = ["ON_DEMAND_INTERVAL_S", "ROTATE_PAYLOAD", "RingKeeper", "call_blobs"]
