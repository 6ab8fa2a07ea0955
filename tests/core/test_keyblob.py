"""Keyblobs are authenticated and bound (DESIGN invariant 3): pinned by golden vectors, any change fails."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.core import keyblob
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.keyblob import Binding
from ehsm_kms.core.secret import SecretBytes

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "keyblob_golden.json"

RING = DomainKeyRing.generate()
BINDING = Binding(
    purpose="cmk",
    keyid="5e3bf8c5-36d5-4b2c-9d2a-6c1e0f2a7b11",
    appid="0e1a2b3c-4d5e-4f60-8172-93a4b5c6d7e8",
    keyspec=3,
    usage=1,
    origin=1,
    key_version=1,
)
MATERIAL = bytes(range(32))


def _golden_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(GOLDEN.read_text())["cases"]
    return cases


def _fails(ring: DomainKeyRing, binding: Binding, blob: Any) -> errors.CryptoError:
    with pytest.raises(errors.CryptoError) as info:
        keyblob.unwrap(ring, binding, blob)
    return info.value


# ------------------------------------------------------------------------------------------- golden vectors
@pytest.mark.parametrize("case", _golden_cases(), ids=lambda c: c["name"])
def test_golden_vector(case: dict[str, Any]) -> None:
    version = case["dk_version"]
    ring = DomainKeyRing({version: bytes.fromhex(case["dk"])}, version)
    binding = Binding(**case["binding"])
    material = bytes.fromhex(case["material"])

    assert keyblob.associated_data(version, binding).hex() == case["aad"]
    blob = keyblob._wrap_with_nonce(ring, version, binding, material, bytes.fromhex(case["nonce"]))
    assert blob.hex() == case["blob"]
    assert keyblob.unwrap(ring, binding, bytes.fromhex(case["blob"])).reveal() == material
    assert keyblob.dk_version(blob) == version


def test_layout_matches_the_docstring() -> None:
    blob = keyblob.wrap(RING, BINDING, MATERIAL)
    assert blob[:4] == b"EHKB"
    assert blob[4] == 1
    assert struct.unpack(">I", blob[5:9])[0] == RING.current_version
    assert len(blob) == 4 + 1 + 4 + 12 + len(MATERIAL) + 16 == keyblob.OVERHEAD + len(MATERIAL)


# ---------------------------------------------------------------------------------------------- round trips
def test_round_trip_returns_secret_bytes() -> None:
    opened = keyblob.unwrap(RING, BINDING, keyblob.wrap(RING, BINDING, MATERIAL))
    assert isinstance(opened, SecretBytes)
    assert opened.reveal() == MATERIAL
    assert MATERIAL.hex() not in repr(opened)


def test_each_wrap_uses_a_fresh_nonce() -> None:
    a, b = keyblob.wrap(RING, BINDING, MATERIAL), keyblob.wrap(RING, BINDING, MATERIAL)
    assert a[9:21] != b[9:21]
    assert a != b


def test_empty_material_round_trips() -> None:
    assert keyblob.unwrap(RING, BINDING, keyblob.wrap(RING, BINDING, b"")).reveal() == b""


# ---------------------------------------------------------------------------------------------- binding
@pytest.mark.parametrize(
    "change",
    [
        {"keyid": "another-key"},
        {"appid": "another-app"},
        {"keyid": "another-key", "appid": "another-app"},
        {"purpose": "apikey"},
        {"purpose": "secret-key"},
        {"keyspec": 1},
        {"usage": 2},
        {"origin": 2},
        {"key_version": 2},
        {"key_version": 0},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_a_moved_or_relabelled_blob_fails(change: dict[str, Any]) -> None:
    blob = keyblob.wrap(RING, BINDING, MATERIAL)
    _fails(RING, dataclasses.replace(BINDING, **change), blob)


def test_length_prefixes_keep_neighbouring_fields_apart() -> None:
    a = dataclasses.replace(BINDING, keyid="ab", appid="c")
    b = dataclasses.replace(BINDING, keyid="a", appid="bc")
    assert keyblob.associated_data(1, a) != keyblob.associated_data(1, b)
    _fails(RING, b, keyblob.wrap(RING, a, MATERIAL))


@pytest.mark.parametrize(
    "change",
    [{"keyspec": -1}, {"usage": 2**32}, {"key_version": True}, {"purpose": ""}, {"keyid": "\udc80"}],
    ids=["negative", "too-large", "bool", "empty-purpose", "unencodable"],
)
def test_a_binding_that_does_not_encode_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(errors.CryptoError):
        keyblob.wrap(RING, dataclasses.replace(BINDING, **change), MATERIAL)


def test_binding_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BINDING.keyid = "x"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- one error
def _variants() -> dict[str, tuple[DomainKeyRing, bytes]]:
    blob = keyblob.wrap(RING, BINDING, MATERIAL)
    other = DomainKeyRing.generate()
    ahead = DomainKeyRing(
        {RING.current_version: RING.key(RING.current_version), 9: bytes(32)},
        9,
    )
    return {
        "bad magic": (RING, b"XHKB" + blob[4:]),
        "unknown format version": (RING, blob[:4] + b"\x02" + blob[5:]),
        "unknown dk version": (RING, keyblob.wrap(ahead, BINDING, MATERIAL)),
        "other dk": (other, blob),
        "tag": (RING, blob[:-1] + bytes([blob[-1] ^ 1])),
        "ciphertext": (RING, blob[:21] + bytes([blob[21] ^ 0x80]) + blob[22:]),
        "nonce": (RING, blob[:9] + bytes([blob[9] ^ 1]) + blob[10:]),
        "dk version field": (RING, blob[:5] + struct.pack(">I", 2) + blob[9:]),
        "truncated": (RING, blob[:-1]),
        "header only": (RING, blob[:21]),
        "empty": (RING, b""),
        "extended": (RING, blob + b"\x00"),
    }


@pytest.mark.parametrize("cause", list(_variants()))
def test_every_failure_is_the_same_error(cause: str) -> None:
    ring, blob = _variants()[cause]
    error = _fails(ring, BINDING, blob)
    assert type(error) is errors.CryptoError
    assert error.message == errors.CryptoError.default_message
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_a_binding_mismatch_is_the_same_error_too() -> None:
    error = _fails(RING, dataclasses.replace(BINDING, appid="x"), keyblob.wrap(RING, BINDING, MATERIAL))
    assert type(error) is errors.CryptoError
    assert error.message == errors.CryptoError.default_message


@pytest.mark.parametrize("blob", [None, "EHKB", 42], ids=["none", "str", "int"])
def test_a_blob_of_the_wrong_type_is_the_same_error(blob: Any) -> None:
    _fails(RING, BINDING, blob)
    with pytest.raises(errors.CryptoError):
        keyblob.dk_version(blob)


# ---------------------------------------------------------------------------------------------- versions
def test_dk_version_reads_the_header() -> None:
    ring = DomainKeyRing.generate()
    assert keyblob.dk_version(keyblob.wrap(ring, BINDING, MATERIAL)) == 1
    ring.rotate()
    assert keyblob.dk_version(keyblob.wrap(ring, BINDING, MATERIAL)) == 2
    with pytest.raises(errors.CryptoError):
        keyblob.dk_version(b"EHKB\x01\x00")


def test_rewrap_moves_a_blob_to_the_current_dk() -> None:
    ring = DomainKeyRing.generate()
    old = keyblob.wrap(ring, BINDING, MATERIAL)
    assert keyblob.rewrap(ring, BINDING, old) is old  # already current: authenticated, unchanged
    ring.rotate()
    new = keyblob.rewrap(ring, BINDING, old)
    assert keyblob.dk_version(new) == 2
    assert keyblob.unwrap(ring, BINDING, new).reveal() == MATERIAL
    assert keyblob.unwrap(ring, BINDING, old).reveal() == MATERIAL  # old versions still open
    _fails(DomainKeyRing({2: ring.key(2)}, 2), BINDING, old)  # ...but only with the old DK


def test_rewrap_refuses_a_blob_bound_elsewhere() -> None:
    ring = DomainKeyRing.generate()
    blob = keyblob.wrap(ring, BINDING, MATERIAL)
    ring.rotate()
    with pytest.raises(errors.CryptoError):
        keyblob.rewrap(ring, dataclasses.replace(BINDING, keyid="other"), blob)


# ---------------------------------------------------------------------------------------------- properties
_text = st.text(max_size=80)
_u32 = st.integers(min_value=0, max_value=2**32 - 1)
_bindings = st.builds(
    Binding,
    purpose=st.text(min_size=1, max_size=20),
    keyid=_text,
    appid=_text,
    keyspec=_u32,
    usage=_u32,
    origin=_u32,
    key_version=_u32,
)


@settings(deadline=None)
@given(binding=_bindings, material=st.binary(max_size=2048))
def test_property_round_trip(binding: Binding, material: bytes) -> None:
    assert keyblob.unwrap(RING, binding, keyblob.wrap(RING, binding, material)).reveal() == material


@settings(deadline=None)
@given(material=st.binary(max_size=256), data=st.data())
def test_property_any_changed_byte_fails(material: bytes, data: st.DataObject) -> None:
    blob = keyblob.wrap(RING, BINDING, material)
    index = data.draw(st.integers(min_value=0, max_value=len(blob) - 1), label="index")
    flip = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    tampered = blob[:index] + bytes([blob[index] ^ flip]) + blob[index + 1 :]
    _fails(RING, BINDING, tampered)


@settings(deadline=None)
@given(material=st.binary(max_size=256), cut=st.integers(min_value=1, max_value=300), extra=st.binary(min_size=1))
def test_property_truncated_or_extended_fails(material: bytes, cut: int, extra: bytes) -> None:
    blob = keyblob.wrap(RING, BINDING, material)
    _fails(RING, BINDING, blob[: max(0, len(blob) - cut)])
    _fails(RING, BINDING, blob + extra)


@settings(deadline=None)
@given(a=_bindings, b=_bindings)
def test_property_different_bindings_never_share_associated_data(a: Binding, b: Binding) -> None:
    if a != b:
        assert keyblob.associated_data(1, a) != keyblob.associated_data(1, b)
        _fails(RING, b, keyblob.wrap(RING, a, MATERIAL))
