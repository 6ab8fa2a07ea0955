"""Where a core's domain-key ring comes from, and how a newer ring is told apart from a wrong one.

Two sources, one interface (:class:`RingSource`), picked by ``run_mode``:

- ``single``: the sealed file of this node (:mod:`ehsm_kms.core.dk`), opened through its sealer. The core keeps the
  sealer, so it can pick up a ring that ``ehsm-kms admin rotate-dk`` (another core process on this machine) saved,
  and can rotate and save itself. Looking for a newer ring reads the file and unseals it only when its bytes
  changed, so the periodic look costs a file read, not a scrypt or an HSM round trip.
- ``cluster``: the machine's dkeycache (:func:`ehsm_kms.core.ringfetch.fetch_ring`); rotation happens on the
  dkeyserver, never here.

A ring replaces the one a core holds only if it *extends* it (:func:`extends`): every version the core holds is in
the new ring with the identical key, and the current version does not go back. Anything else (a cache serving
another cluster's ring, a rolled-back file) would orphan blobs or wrap new ones under a key other nodes lack, so it
is refused and logged, and the core keeps the ring it has.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ehsm_kms import errors
from ehsm_kms.core import dk
from ehsm_kms.core.bootstrap import make_sealer
from ehsm_kms.core.coreconfig import CoreConfig
from ehsm_kms.core.ringfetch import fetch_ring

CLUSTER_ROTATION = "in cluster mode the domain key is rotated on the dkeyserver, not on a node"


def extends(old: dk.DomainKeyRing | None, new: dk.DomainKeyRing) -> str | None:
    """None when ``new`` may replace ``old``; else why not (never naming a key)."""
    if old is None:
        return None
    held = set(new.versions)
    for version in old.versions:
        if version not in held:
            return f"it lacks domain-key version {version}"
        if new.key(version) != old.key(version):
            return f"its domain-key version {version} differs from the one this core holds"
    if new.current_version < old.current_version:
        return f"its current version {new.current_version} is older than {old.current_version}"
    return None


class RingSource(Protocol):
    mode: str

    def first(self) -> dk.DomainKeyRing:
        """The ring at start: CoreStartError (single: fail fast) or CoreUnavailable (cluster: wait and retry)."""

    def latest(self) -> dk.DomainKeyRing | None:
        """The source's ring now, or None when nothing changed since the last look."""

    def rotate(self, current: dk.DomainKeyRing) -> dk.DomainKeyRing:
        """A ring with one more version, made current and saved before it is returned."""


class SealedFileSource:
    """The single-mode source: the node's sealed file."""

    mode = "single"

    def __init__(self, cfg: CoreConfig) -> None:
        self._sealer = make_sealer(cfg)
        self._path = Path(cfg.sealed_path)
        self._create = cfg.create
        self._seen: bytes | None = None

    def _read(self) -> bytes:
        try:
            return self._path.read_bytes()
        except OSError as exc:
            raise errors.CoreUnavailable(f"cannot read the sealed domain key: {exc.strerror}") from None

    def first(self) -> dk.DomainKeyRing:
        with self._locked():
            ring = dk.load_or_create(self._sealer, self._path, create=self._create)
            self._seen = self._read()
        return ring

    def latest(self) -> dk.DomainKeyRing | None:
        data = self._read()
        if data == self._seen:
            return None
        ring = dk.DomainKeyRing.from_bytes(self._sealer.unseal(data))
        self._seen = data
        return ring

    def rotate(self, current: dk.DomainKeyRing) -> dk.DomainKeyRing:
        # Under the lock, from the file as it is now: two rotations at once (two admin commands, or one and a
        # running server's core) must never both write "version n+1" with different keys.
        with self._locked():
            data = self._read()
            on_disk = dk.DomainKeyRing.from_bytes(self._sealer.unseal(data))
            problem = extends(current, on_disk)
            if problem is not None:
                raise errors.CoreUnavailable(f"the sealed domain key does not extend this core's ring: {problem}")
            ring = dk.DomainKeyRing.from_bytes(on_disk.to_bytes())
            ring.rotate()
            dk.save(self._sealer, self._path, ring)
            self._seen = self._read()
        return ring

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self._path.with_name(self._path.name + ".lock")
        try:
            lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise errors.CoreStartError(f"cannot lock the sealed domain key: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


class DkeycacheSource:
    """The cluster-mode source: the machine's dkeycache, over its Unix socket."""

    mode = "cluster"

    def __init__(self, cfg: CoreConfig) -> None:
        if not cfg.dkeycache_socket:
            raise errors.CoreStartError("cluster mode needs the dkeycache socket path (dkeycache_socket)")
        self._socket = cfg.dkeycache_socket
        self._timeout = cfg.dk_fetch_timeout_s

    def first(self) -> dk.DomainKeyRing:
        return fetch_ring(self._socket, timeout=self._timeout)

    def latest(self) -> dk.DomainKeyRing | None:
        return fetch_ring(self._socket, timeout=self._timeout)

    def rotate(self, current: dk.DomainKeyRing) -> dk.DomainKeyRing:
        raise errors.ConfigError(CLUSTER_ROTATION)


def ring_source(cfg: CoreConfig) -> RingSource:
    if cfg.run_mode == "cluster":
        return DkeycacheSource(cfg)
    if cfg.run_mode != "single":
        raise errors.CoreStartError(f"unknown run_mode {cfg.run_mode!r}")
    return SealedFileSource(cfg)


__all__ = ["CLUSTER_ROTATION", "DkeycacheSource", "RingSource", "SealedFileSource", "extends", "ring_source"]
