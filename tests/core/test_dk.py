"""The domain-key ring: versions, rotation, serialization, purpose keys, and the sealed file on disk."""

from __future__ import annotations

import copy
import hashlib
import hmac
import os
import pickle
import stat
import struct
from pathlib import Path

import pytest

from ehsm_kms import errors
from ehsm_kms.core import dk
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.sealers import FileSealer, PassphraseSealer

FAST = {"n": 2**4, "r": 8, "p": 1}  # scrypt kept cheap in tests; the default stays 2**15


def _hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 with the standard library, to check derive() independently of the library it uses."""
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


# ---------------------------------------------------------------------------------------------- the ring
def test_generate_makes_version_one() -> None:
    ring = DomainKeyRing.generate()
    assert ring.current_version == 1
    assert ring.versions == (1,)
    assert len(ring.key(1)) == 32
    assert DomainKeyRing.generate().key(1) != ring.key(1)


@pytest.mark.parametrize("version", [0, 2, -1, "1", None])
def test_unknown_version_is_a_crypto_error(version: object) -> None:
    with pytest.raises(errors.CryptoError):
        DomainKeyRing.generate().key(version)  # type: ignore[arg-type]


def test_rotate_adds_a_current_version_and_keeps_the_old() -> None:
    ring = DomainKeyRing.generate()
    first = ring.key(1)
    assert ring.rotate() == 2
    assert ring.current_version == 2
    assert ring.versions == (1, 2)
    assert ring.key(1) == first
    assert ring.key(2) != first
    assert ring.rotate() == 3
    assert ring.versions == tuple(range(1, 4))


def test_serialization_round_trip_and_layout() -> None:
    ring = DomainKeyRing.generate()
    ring.rotate()
    data = ring.to_bytes()
    assert data[:8] == b"EHDKRING"
    assert data[8] == 1
    assert struct.unpack(">II", data[9:17]) == (2, 2)
    assert len(data) == 17 + 2 * 36
    assert data[17:21] == struct.pack(">I", 1)
    assert data[21:53] == ring.key(1)
    again = DomainKeyRing.from_bytes(data)
    assert again == ring
    assert again.current_version == 2
    assert again.key(1) == ring.key(1)


def _entry(version: int, key: bytes = b"\x11" * 32) -> bytes:
    return struct.pack(">I", version) + key


def _ring(current: int, *entries: bytes, magic: bytes = b"EHDKRING", fmt: int = 1, count: int | None = None) -> bytes:
    n = len(entries) if count is None else count
    return magic + bytes([fmt]) + struct.pack(">II", current, n) + b"".join(entries)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        _ring(1, _entry(1), magic=b"EHDKRINX"),
        _ring(1, _entry(1), fmt=2),
        _ring(1, _entry(1))[:-1],
        _ring(1, _entry(1)) + b"\x00",
        _ring(1, count=0),
        _ring(1, _entry(1), count=2),
        _ring(2, _entry(1)),
        _ring(1, _entry(2), _entry(1)),
        _ring(1, _entry(1), _entry(1)),
        _ring(0, _entry(0)),
    ],
    ids=[
        "empty",
        "garbage",
        "magic",
        "format",
        "short",
        "long",
        "no-versions",
        "count",
        "current-missing",
        "out-of-order",
        "duplicate",
        "version-zero",
    ],
)
def test_from_bytes_rejects_garbage(data: bytes) -> None:
    with pytest.raises(errors.CoreStartError, match="malformed"):
        DomainKeyRing.from_bytes(data)


def test_constructor_checks_its_input() -> None:
    with pytest.raises(errors.CryptoError):
        DomainKeyRing({}, 1)
    with pytest.raises(errors.CryptoError):
        DomainKeyRing({1: b"short"}, 1)
    with pytest.raises(errors.CryptoError):
        DomainKeyRing({1: bytes(32)}, 2)
    with pytest.raises(errors.CryptoError):
        DomainKeyRing({0: bytes(32)}, 0)


def test_repr_is_masked_and_pickling_refused() -> None:
    ring = DomainKeyRing.generate()
    key = ring.key(1)
    for text in (repr(ring), str(ring), f"{ring}"):
        assert key.hex() not in text
        assert repr(key) not in text
        assert "current_version=1" in text
    with pytest.raises(TypeError):
        pickle.dumps(ring)
    with pytest.raises(TypeError):
        copy.copy(ring)
    with pytest.raises(TypeError):
        hash(ring)


# ---------------------------------------------------------------------------------------------- derive
def test_derive_is_hkdf_sha256_of_the_current_dk() -> None:
    ring = DomainKeyRing.generate()
    derived = ring.derive(b"import-token")
    assert derived == _hkdf_sha256(ring.key(1), b"ehsm-kms/dk-derive/v1/import-token")
    assert len(derived) == 32
    assert ring.derive(b"import-token") == derived
    assert ring.derive(b"other") != derived


def test_derive_follows_rotation_and_can_name_a_version() -> None:
    ring = DomainKeyRing.generate()
    before = ring.derive(b"import-token")
    ring.rotate()
    assert ring.derive(b"import-token") != before
    assert ring.derive(b"import-token", version=1) == before
    with pytest.raises(errors.CryptoError):
        ring.derive(b"import-token", version=7)


@pytest.mark.parametrize("purpose", [b"", "text"])
def test_derive_needs_a_purpose(purpose: object) -> None:
    with pytest.raises(errors.CryptoError):
        DomainKeyRing.generate().derive(purpose)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ the sealed file
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_load_or_create_creates_once_then_loads(tmp_path: Path) -> None:
    sealer = PassphraseSealer(b"correct horse", **FAST)
    path = tmp_path / "data" / "dk.sealed"
    created = dk.load_or_create(sealer, path)
    assert path.is_file()
    assert _mode(path) == 0o600
    first = path.read_bytes()
    assert created.key(1) not in first

    loaded = dk.load_or_create(PassphraseSealer(b"correct horse", **FAST), path)
    assert loaded == created
    assert path.read_bytes() == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["dk.sealed"]  # no temp files left


def test_load_without_create_needs_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dk.sealed"
    with pytest.raises(errors.CoreStartError, match="no sealed domain key"):
        dk.load_or_create(PassphraseSealer(b"pw", **FAST), path, create=False)
    assert not path.exists()


def test_a_file_that_does_not_open_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "dk.sealed"
    dk.load_or_create(PassphraseSealer(b"right", **FAST), path)
    before = path.read_bytes()
    with pytest.raises(errors.CoreStartError, match="wrong passphrase or damaged sealed file"):
        dk.load_or_create(PassphraseSealer(b"wrong", **FAST), path)
    assert path.read_bytes() == before

    damaged = bytearray(before)
    damaged[-5] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(errors.CoreStartError, match="wrong passphrase or damaged sealed file"):
        dk.load_or_create(PassphraseSealer(b"right", **FAST), path)
    assert path.read_bytes() == bytes(damaged)

    path.write_bytes(b"")
    with pytest.raises(errors.CoreStartError, match="not a sealed domain-key file"):
        dk.load_or_create(PassphraseSealer(b"right", **FAST), path)
    assert path.read_bytes() == b""


def test_the_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dk.sealed"
    dk.load_or_create(PassphraseSealer(b"right", **FAST), path)
    with pytest.raises(errors.CoreStartError) as info:
        dk.load_or_create(PassphraseSealer(b"wrong", **FAST), path)
    assert str(path) in str(info.value.message)


def test_loading_with_another_kind_of_sealer_says_so(tmp_path: Path) -> None:
    path = tmp_path / "dk.sealed"
    dk.load_or_create(FileSealer(allow=True), path)
    before = path.read_bytes()
    with pytest.raises(errors.CoreStartError, match="made by the 'file' sealer, but the 'passphrase' sealer"):
        dk.load_or_create(PassphraseSealer(b"pw", **FAST), path)
    assert path.read_bytes() == before


def test_save_after_rotate(tmp_path: Path) -> None:
    sealer = PassphraseSealer(b"pw", **FAST)
    path = tmp_path / "dk.sealed"
    ring = dk.load_or_create(sealer, path)
    old = ring.key(1)
    ring.rotate()
    dk.save(sealer, path, ring)
    assert _mode(path) == 0o600
    again = dk.load_or_create(sealer, path)
    assert again.current_version == 2
    assert again.key(1) == old
    assert again == ring
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dk.sealed"]


def test_create_never_clobbers_a_file_that_appears(tmp_path: Path) -> None:
    """Two processes starting at once: the second one's new DK must not replace the first one's."""
    path = tmp_path / "dk.sealed"
    sealer = FileSealer(allow=True)
    theirs = dk.load_or_create(sealer, path)
    assert dk._write_new(path, sealer.seal(DomainKeyRing.generate().to_bytes())) is False
    assert dk.load_or_create(sealer, path) == theirs


def test_save_is_atomic_when_the_sealer_fails(tmp_path: Path) -> None:
    path = tmp_path / "dk.sealed"
    dk.load_or_create(PassphraseSealer(b"pw", **FAST), path)
    before = path.read_bytes()

    class Broken:
        name = "broken"

        def seal(self, data: bytes) -> bytes:
            raise errors.CoreStartError("token unplugged")

        def unseal(self, sealed: bytes) -> bytes:  # pragma: no cover - not reached
            raise errors.CoreStartError("token unplugged")

    with pytest.raises(errors.CoreStartError, match="token unplugged"):
        dk.save(Broken(), path, DomainKeyRing.generate())
    assert path.read_bytes() == before


def test_umask_does_not_widen_the_mode(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "dk.sealed"
        dk.load_or_create(FileSealer(allow=True), path)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
