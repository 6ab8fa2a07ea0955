"""The domain-key (DK) ring: every version of the DK this cluster has used, and the sealed file that keeps it.

The original had one DK and no identifier for it, so it could never be rotated. Here the DK is a ring: each
version is 32 random bytes, blobs name the version that wrapped them, :meth:`DomainKeyRing.rotate` adds a
version that becomes current, and old versions stay so that existing blobs still open (and can be rewrapped).

Serialized ring (what a sealer seals), all integers big-endian::

    offset  size  field
    0       8     magic b"EHDKRING"
    8       1     format version (1)
    9       4     current DK version (u32)
    13      4     count of versions (u32, >= 1)
    17      36*n  n entries, versions strictly increasing: DK version (u32) || DK (32 bytes)

The sealed file is written once by :func:`load_or_create` and replaced only by :func:`save`; a file that
exists but cannot be opened stops the start, instead of being replaced by a new DK (orphaning every key).
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ehsm_kms import errors
from ehsm_kms.core.secret import SecretBytes

if TYPE_CHECKING:
    from ehsm_kms.core.sealers.base import Sealer

DK_SIZE = 32
MAX_VERSION = 0xFFFFFFFF
MAX_VERSIONS = 4096  # a ring this large means something is rotating in a loop

_MAGIC = b"EHDKRING"
_FORMAT = 1
_HEAD = struct.Struct(">8sBII")
_ENTRY = struct.Struct(">I32s")
_DERIVE_INFO = b"ehsm-kms/dk-derive/v1/"


class DomainKeyRing:
    """All DK versions and which one is current; only :meth:`key` and :meth:`to_bytes` reveal a DK."""

    __slots__ = ("_aeads", "_current", "_keys")

    def __init__(self, keys: Mapping[int, bytes | SecretBytes], current_version: int) -> None:
        if not keys:
            raise errors.CryptoError("a domain-key ring needs at least one version")
        ring: dict[int, SecretBytes] = {}
        for version in sorted(keys):
            value = keys[version]
            raw = value.reveal() if isinstance(value, SecretBytes) else bytes(value)
            if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
                raise errors.CryptoError("domain-key versions are integers from 1 to 2**32-1")
            if len(raw) != DK_SIZE:
                raise errors.CryptoError("a domain key is 32 bytes")
            ring[version] = SecretBytes(raw)
        if len(ring) > MAX_VERSIONS:
            raise errors.CryptoError("too many domain-key versions")
        if current_version not in ring:
            raise errors.CryptoError("the current domain-key version is not in the ring")
        self._keys = ring
        self._current = current_version
        self._aeads: dict[int, AESGCM] = {}

    @classmethod
    def generate(cls) -> DomainKeyRing:
        """A new ring holding one fresh DK, version 1."""
        return cls({1: os.urandom(DK_SIZE)}, 1)

    @property
    def current_version(self) -> int:
        return self._current

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(self._keys)

    def key(self, version: int) -> bytes:
        """The DK of ``version``; CryptoError for a version this ring does not hold."""
        try:
            return self._keys[version].reveal()
        except (KeyError, TypeError):
            raise errors.CryptoError() from None

    def aead(self, version: int) -> AESGCM:
        """AES-256-GCM under DK ``version``, kept per version (keyblobs would build one per call)."""
        aead = self._aeads.get(version)
        if aead is None:
            aead = self._aeads[version] = AESGCM(self.key(version))
        return aead

    def rotate(self) -> int:
        """Add a fresh DK as the next version and make it current; earlier versions stay for unwrapping."""
        newest = max(self._keys)
        if newest >= MAX_VERSION or len(self._keys) >= MAX_VERSIONS:
            raise errors.CryptoError("the domain-key ring is full")
        version = newest + 1
        keys = dict(self._keys)
        keys[version] = SecretBytes(os.urandom(DK_SIZE))
        # Publish the mapping before the current version, so a reader never sees a version it cannot find.
        self._keys = keys
        self._current = version
        return version

    def derive(self, purpose: bytes, *, version: int | None = None) -> bytes:
        """A 32-byte key for one purpose (e.g. import-token MACs), from the current DK or DK ``version``.

        Rotating the DK changes every derived key; whoever keeps a MAC made with one should also keep the DK
        version and pass it back here.
        """
        if not isinstance(purpose, bytes) or not purpose:
            raise errors.CryptoError("a derived key needs a non-empty purpose")
        ikm = self.key(self._current if version is None else version)
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DERIVE_INFO + purpose)
        return hkdf.derive(ikm)

    def to_bytes(self) -> bytes:
        """The versioned serialization a sealer seals (module docstring). It holds every DK in the clear."""
        parts = [_HEAD.pack(_MAGIC, _FORMAT, self._current, len(self._keys))]
        parts.extend(_ENTRY.pack(version, key.reveal()) for version, key in self._keys.items())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> DomainKeyRing:
        """Parse :meth:`to_bytes` output strictly; anything else is CoreStartError (the core cannot start)."""
        bad = "the unsealed domain-key ring is malformed"
        if len(data) < _HEAD.size:
            raise errors.CoreStartError(f"{bad} (too short)")
        magic, fmt, current, count = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            raise errors.CoreStartError(f"{bad} (not a domain-key ring)")
        if fmt != _FORMAT:
            raise errors.CoreStartError(f"{bad} (unknown format version {fmt})")
        if not 1 <= count <= MAX_VERSIONS or len(data) != _HEAD.size + count * _ENTRY.size:
            raise errors.CoreStartError(f"{bad} (wrong length)")
        keys: dict[int, bytes] = {}
        previous = 0
        for version, key in _ENTRY.iter_unpack(data[_HEAD.size :]):
            if version <= previous:
                raise errors.CoreStartError(f"{bad} (versions out of order)")
            keys[version] = key
            previous = version
        if current not in keys:
            raise errors.CoreStartError(f"{bad} (current version {current} missing)")
        return cls(keys, current)

    def __repr__(self) -> str:
        return f"DomainKeyRing(current_version={self._current}, versions={list(self._keys)})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DomainKeyRing):
            return NotImplemented
        return (
            self._current == other._current
            and self._keys.keys() == other._keys.keys()
            and all(self._keys[v] == other._keys[v] for v in self._keys)
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("a DomainKeyRing cannot be pickled")


# ------------------------------------------------------------------------------------------ the sealed file
def load_or_create(sealer: Sealer, path: Path, *, create: bool = True) -> DomainKeyRing:
    """Open the sealed ring at ``path``; if there is none and ``create`` is set, make, seal and write one.

    A file that exists is never replaced here, whatever is wrong with it: a wrong PIN or passphrase, or
    damage, raises CoreStartError and leaves the file as it was.
    """
    path = Path(path)
    sealed = _read(path)
    if sealed is not None:
        return _open(sealer, path, sealed)
    if not create:
        raise errors.CoreStartError(f"no sealed domain key at {path} (and creating one was not asked for)")
    ring = DomainKeyRing.generate()
    data = sealer.seal(ring.to_bytes())
    if not _write_new(path, data):
        # Another process created it between our look and our write: use theirs, never ours over it.
        raced = _read(path)
        if raced is None:  # pragma: no cover - it was there a moment ago
            raise errors.CoreStartError(f"the sealed domain key at {path} appeared and vanished")
        return _open(sealer, path, raced)
    return ring


def save(sealer: Sealer, path: Path, ring: DomainKeyRing) -> None:
    """Seal ``ring`` and replace the file at ``path`` atomically (after :meth:`DomainKeyRing.rotate`)."""
    path = Path(path)
    data = sealer.seal(ring.to_bytes())
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise errors.CoreStartError(f"cannot write the sealed domain key to {path}: {exc.strerror}") from None
    _fsync_dir(path.parent)


def _open(sealer: Sealer, path: Path, sealed: bytes) -> DomainKeyRing:
    try:
        return DomainKeyRing.from_bytes(sealer.unseal(sealed))
    except errors.CoreStartError as exc:
        raise errors.CoreStartError(f"{exc.message} ({path})") from None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise errors.CoreStartError(f"cannot read the sealed domain key at {path}: {exc.strerror}") from None


def _write_temp(path: Path, data: bytes) -> Path:
    """Write ``data`` to a 0600 temporary file beside ``path`` and fsync it."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise errors.CoreStartError(f"cannot write the sealed domain key to {path}: {exc.strerror}") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        _unlink_quietly(tmp)
        raise errors.CoreStartError(f"cannot write the sealed domain key to {path}: {exc.strerror}") from None
    return tmp


def _write_new(path: Path, data: bytes) -> bool:
    """Publish ``data`` at ``path`` only if nothing is there; False if something already is."""
    tmp = _write_temp(path, data)
    try:
        try:
            os.link(tmp, path)  # atomic and refuses to replace an existing file
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # A file system without hard links: rename is still atomic; look first so we do not clobber.
            if path.exists():
                return False
            os.rename(tmp, path)
    except OSError as exc:
        raise errors.CoreStartError(f"cannot write the sealed domain key to {path}: {exc.strerror}") from None
    finally:
        _unlink_quietly(tmp)
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise errors.CoreStartError(f"cannot sync directory {directory}: {exc.strerror}") from None
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
