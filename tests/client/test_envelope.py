"""Envelope encryption: the format against golden vectors, round trips, every kind of tampering, the data-key cache.

Data keys come from the live server (GenerateDataKey / Decrypt); only the golden vectors use a fixed data key,
because they pin the bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from ehsm_kms import errors
from ehsm_kms.client import Client, DataKey, EnvelopeError
from ehsm_kms.client import envelope as env
from ehsm_kms.client.cache import DataKeyCache
from tests.live import LiveServer

VECTORS = json.loads((Path(__file__).parent / "data" / "stream_v1.json").read_text())["vectors"]


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[Client]:
    with Client(live_server.url) as made:
        made.enroll()
        yield made


@pytest.fixture(scope="module")
def keyid(client: Client) -> str:
    return client.create_key()


def seal(client: Client, keyid: str, data: bytes, **kw: Any) -> bytes:
    return env.encrypt_bytes(client, keyid, data, **kw)


# ------------------------------------------------------------------------------------------ golden vectors
class FixedKey:
    """A key source that knows one data key: the golden vectors pin bytes, so their data key is fixed."""

    def __init__(self, vector: dict[str, Any]) -> None:
        self.vector = vector
        self.asked: list[tuple[str, bytes, bytes | None]] = []

    url = "fixed"
    appid = None

    def generate_data_key(self, keyid: str, keylen: int = 32, *, aad: bytes | None = None) -> DataKey:
        raise AssertionError("not used")

    def decrypt(self, keyid: str, ciphertext: bytes, *, aad: bytes | None = None) -> bytes:
        self.asked.append((keyid, ciphertext, aad))
        return bytes.fromhex(self.vector["data_key"])


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_golden_vectors(vector: dict[str, Any]) -> None:
    header = env.Header(
        keyid=vector["keyid"],
        wrapped_key=bytes.fromhex(vector["wrapped_key"]),
        chunk_size=vector["chunk_size"],
        message_nonce=bytes.fromhex(vector["message_nonce"]),
        aad=bytes.fromhex(vector["aad"]),
    )
    plaintext = bytes.fromhex(vector["plaintext"])
    expected = bytes.fromhex(vector["message"])
    out = io.BytesIO()
    info = env.write_message(header, bytes.fromhex(vector["data_key"]), io.BytesIO(plaintext), out)
    assert out.getvalue() == expected
    assert info.plaintext_bytes == len(plaintext)

    source = FixedKey(vector)
    back = io.BytesIO()
    info = env.decrypt_stream(source, io.BytesIO(expected), back)  # type: ignore[arg-type]
    assert back.getvalue() == plaintext and info.keyid == vector["keyid"] and info.aad == header.aad
    assert source.asked == [(vector["keyid"], header.wrapped_key, env.DATA_KEY_CONTEXT + header.aad)]


def test_golden_vector_read_by_the_documented_layout() -> None:
    """Parse and open the first vector with nothing but the layout in docs/sdk.md and pyca/cryptography."""
    vector = VECTORS[0]
    message = bytes.fromhex(vector["message"])
    magic, version, suite, chunk_size, nonce, keyid_len = struct.unpack(">4sBBI16sB", message[:27])
    assert (magic, version, suite, chunk_size) == (b"EHKS", 1, 1, vector["chunk_size"])
    pos = 27 + keyid_len
    assert message[27:pos].decode() == vector["keyid"]
    (aad_len,) = struct.unpack(">H", message[pos : pos + 2])
    pos += 2 + aad_len
    (wrapped_len,) = struct.unpack(">H", message[pos : pos + 2])
    pos += 2 + wrapped_len
    header, tag, body = message[:pos], message[pos : pos + 16], message[pos + 16 :]
    okm = HKDF(hashes.SHA256(), 40, salt=nonce, info=b"ehsm-kms stream v1").derive(bytes.fromhex(vector["data_key"]))
    aead, prefix = AESGCM(okm[:32]), okm[32:]
    assert aead.decrypt(prefix + b"\xff" * 4, tag, header) == b""
    digest = hashlib.sha256(header).digest()
    first = aead.decrypt(prefix + struct.pack(">I", 0), body[: chunk_size + 16], digest + struct.pack(">IB", 0, 0))
    assert first == bytes.fromhex(vector["plaintext"])[:chunk_size]


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 64 * 3, 1000])
def test_round_trip(client: Client, keyid: str, size: int) -> None:
    data = os.urandom(size)
    message = seal(client, keyid, data, chunk_size=64, aad=b"purpose=test")
    chunks = size // 64 + 1
    assert len(message) == _body_offset(message) + size + 16 * chunks
    out = io.BytesIO()
    info = env.decrypt_stream(client, io.BytesIO(message), out, aad=b"purpose=test")
    assert out.getvalue() == data
    assert (info.keyid, info.aad, info.chunk_size, info.plaintext_bytes, info.chunks) == (
        keyid,
        b"purpose=test",
        64,
        size,
        chunks,
    )


def test_the_data_key_is_bound_to_the_stream_context(client: Client, keyid: str) -> None:
    message = seal(client, keyid, b"data", aad=b"ctx")
    header, _, _ = env.read_header(io.BytesIO(message))
    with pytest.raises(errors.DecryptionFailed):
        client.decrypt(keyid, header.wrapped_key)  # a plain Decrypt of the wrapped key needs the stream's aad
    assert len(client.decrypt(keyid, header.wrapped_key, aad=env.DATA_KEY_CONTEXT + b"ctx")) == 32


class Trickle(io.RawIOBase):
    """A reader that returns at most 7 bytes per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(min(7, len(buffer)))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_short_reads(client: Client, keyid: str) -> None:
    data = os.urandom(5000)
    out = io.BytesIO()
    env.encrypt_stream(client, keyid, Trickle(data), out, chunk_size=100)  # type: ignore[arg-type]
    back = io.BytesIO()
    env.decrypt_stream(client, Trickle(out.getvalue()), back)  # type: ignore[arg-type]
    assert back.getvalue() == data


def test_memory_stays_constant(client: Client, keyid: str) -> None:
    class Zeros(io.RawIOBase):
        def __init__(self, size: int) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    class Sink(io.RawIOBase):
        def __init__(self) -> None:
            self.digest = hashlib.sha256()

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            self.digest.update(data)
            return len(data)

    tracemalloc.start()
    try:
        sink = Sink()
        env.encrypt_stream(client, keyid, io.BufferedReader(Zeros(64 << 20)), sink)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # 64 MiB through 1 MiB chunks: a few chunks at most


# ------------------------------------------------------------------------------------------ tampering
def _fails(client: Client, message: bytes, cache: DataKeyCache | None = None) -> errors.EhsmError:
    out = io.BytesIO()
    with pytest.raises(errors.EhsmError) as caught:
        env.decrypt_stream(client, io.BytesIO(message), out, cache=cache)
    return caught.value


def _body_offset(message: bytes) -> int:
    _, encoded, tag = env.read_header(io.BytesIO(message))
    return len(encoded) + len(tag)


def test_every_changed_byte_fails(client: Client, keyid: str) -> None:
    message = seal(client, keyid, os.urandom(40), chunk_size=16, aad=b"a")
    body = _body_offset(message)
    cache = DataKeyCache(max_age=60)
    for pos in range(len(message)):
        for flip in (0x01, 0x80):
            damaged = bytearray(message)
            damaged[pos] ^= flip
            error = _fails(client, bytes(damaged), cache)
            if pos >= body:
                assert isinstance(error, EnvelopeError) and "fails authentication" in str(error), pos
    assert cache.stats().hits > 0  # body flips reused the data key; header flips had to ask the KMS


def test_every_truncation_fails(client: Client, keyid: str) -> None:
    message = seal(client, keyid, os.urandom(48), chunk_size=16)
    body = _body_offset(message)
    cache = DataKeyCache(max_age=60)
    for cut in range(len(message)):
        error = _fails(client, message[:cut], cache)
        assert isinstance(error, EnvelopeError), cut
        if cut >= body and (cut - body) % 32 == 0:
            assert "ends before its final chunk" in str(error)


def _chunks(message: bytes, chunk_size: int) -> tuple[bytes, list[bytes]]:
    start = _body_offset(message)
    frame = chunk_size + 16
    body = message[start:]
    return message[:start], [body[i : i + frame] for i in range(0, len(body), frame)]


def test_reordered_dropped_duplicated_or_appended_chunks_fail(client: Client, keyid: str) -> None:
    message = seal(client, keyid, os.urandom(16 * 4 + 5), chunk_size=16)
    head, parts = _chunks(message, 16)
    assert len(parts) == 5
    cases = {
        "swapped": head + parts[1] + parts[0] + b"".join(parts[2:]),
        "dropped": head + parts[0] + b"".join(parts[2:]),
        "duplicated": head + parts[0] + parts[0] + b"".join(parts[1:]),
        "final moved": head + b"".join(parts[:2]) + parts[4] + b"".join(parts[2:4]),
        "appended": message + b"\x00",
        "appended chunk": message + parts[1],
        "final dropped": head + b"".join(parts[:4]),
    }
    for name, damaged in cases.items():
        error = _fails(client, damaged)
        assert isinstance(error, EnvelopeError), name
        assert "chunk" in str(error), (name, str(error))


def test_a_message_of_another_stream_does_not_mix(client: Client, keyid: str) -> None:
    one = seal(client, keyid, b"A" * 64, chunk_size=16)
    two = seal(client, keyid, b"B" * 64, chunk_size=16)
    head_one, parts_one = _chunks(one, 16)
    _, parts_two = _chunks(two, 16)
    assert isinstance(_fails(client, head_one + parts_two[0] + b"".join(parts_one[1:])), EnvelopeError)


def _rewrite_header(message: bytes, **changes: Any) -> bytes:
    header, encoded, tag = env.read_header(io.BytesIO(message))
    fields = {
        "keyid": header.keyid,
        "wrapped_key": header.wrapped_key,
        "chunk_size": header.chunk_size,
        "message_nonce": header.message_nonce,
        "aad": header.aad,
    }
    fields.update(changes)
    return env.Header(**fields).encode() + tag + message[len(encoded) + len(tag) :]


def test_wrong_key(client: Client, keyid: str, live_server: LiveServer) -> None:
    message = seal(client, keyid, b"for the right key only", aad=b"ctx")
    other_key = client.create_key()
    error = _fails(client, _rewrite_header(message, keyid=other_key))
    assert isinstance(error, EnvelopeError) and "does not decrypt under key" in str(error)
    assert error.exit_code == errors.EXIT_CRYPTO
    error = _fails(client, _rewrite_header(message, aad=b"cty"))
    assert isinstance(error, EnvelopeError)
    error = _fails(client, _rewrite_header(message, chunk_size=17))
    assert isinstance(error, EnvelopeError) and "header fails authentication" in str(error)
    with Client(live_server.url) as stranger:
        stranger.enroll()
        error = _fails(stranger, message)  # another app: its KMS answer is "keyid error"
    assert isinstance(error, errors.KeyNotFound) and error.exit_code == errors.EXIT_NOT_FOUND
    with pytest.raises(EnvelopeError, match="associated data"):
        env.decrypt_bytes(client, message, aad=b"expected something else")


def test_not_an_envelope(client: Client, keyid: str) -> None:
    assert "no EHKS header" in str(_fails(client, b"PK\x03\x04 a zip file"))
    assert "no EHKS header" in str(_fails(client, b""))
    message = seal(client, keyid, b"x")
    assert "version 2" in str(_fails(client, message[:4] + b"\x02" + message[5:]))
    assert "suite" in str(_fails(client, message[:5] + b"\x09" + message[6:]))
    assert "chunk size" in str(_fails(client, message[:6] + b"\x00\x00\x00\x00" + message[10:]))
    with pytest.raises(ValueError, match="chunk_size"):
        seal(client, keyid, b"x", chunk_size=0)
    with pytest.raises(ValueError, match="associated data"):
        seal(client, keyid, b"x", aad=b"a" * 4097)


def test_files_appear_only_when_complete(client: Client, keyid: str, tmp_path: Path) -> None:
    src, enc, out = tmp_path / "plain.bin", tmp_path / "plain.bin.ehks", tmp_path / "back.bin"
    src.write_bytes(os.urandom(100_000))
    info = env.encrypt_file(client, keyid, src, enc, chunk_size=4096)
    assert info.chunks == 100_000 // 4096 + 1 and enc.stat().st_mode & 0o777 == 0o600
    env.decrypt_file(client, enc, out)
    assert out.read_bytes() == src.read_bytes() and out.stat().st_mode & 0o777 == 0o600
    out.unlink()
    damaged = bytearray(enc.read_bytes())
    damaged[-1] ^= 1
    enc.write_bytes(bytes(damaged))
    seen: list[int] = []
    with pytest.raises(EnvelopeError, match="chunk 24 fails"):
        env.decrypt_file(client, enc, out, on_progress=seen.append)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["plain.bin", "plain.bin.ehks"]
    assert sum(seen) < enc.stat().st_size  # progress was reported chunk by chunk until the failure


# ------------------------------------------------------------------------------------------ the cache
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_bounds_messages_bytes_and_age(client: Client, keyid: str) -> None:
    clock = Clock()
    cache = DataKeyCache(max_age=60, max_messages=3, max_bytes=100, clock=clock)
    messages = [seal(client, keyid, b"x" * 10, cache=cache) for _ in range(5)]
    assert cache.stats().misses == 2 and cache.stats().hits == 3  # keys for messages 1-3 and 4-5
    wrapped = [env.read_header(io.BytesIO(m))[0].wrapped_key for m in messages]
    assert wrapped[0] == wrapped[1] == wrapped[2] != wrapped[3] == wrapped[4]
    nonces = {env.read_header(io.BytesIO(m))[0].message_nonce for m in messages}
    assert len(nonces) == 5  # one data key, a message key of its own per message
    assert all(env.decrypt_bytes(client, m) == b"x" * 10 for m in messages)

    fresh = DataKeyCache(max_age=60, max_bytes=100, clock=clock)
    a = seal(client, keyid, b"y" * 60, cache=fresh)
    b = seal(client, keyid, b"y" * 60, cache=fresh)  # 120 > 100 bytes: a new key
    c = seal(client, keyid, b"y" * 200, cache=fresh)  # larger than the bound itself: never cached
    assert len({env.read_header(io.BytesIO(m))[0].wrapped_key for m in (a, b, c)}) == 3

    aged = DataKeyCache(max_age=10, clock=clock)
    d = seal(client, keyid, b"z", cache=aged)
    clock.now += 9
    e = seal(client, keyid, b"z", cache=aged)
    clock.now += 2
    f = seal(client, keyid, b"z", cache=aged)
    keys = [env.read_header(io.BytesIO(m))[0].wrapped_key for m in (d, e, f)]
    assert keys[0] == keys[1] != keys[2]


def test_cache_partitions_and_unknown_lengths(client: Client, keyid: str) -> None:
    cache = DataKeyCache(max_age=60)
    first = seal(client, keyid, b"1", cache=cache, aad=b"tenant=a")
    second = seal(client, keyid, b"2", cache=cache, aad=b"tenant=b")
    assert env.read_header(io.BytesIO(first))[0].wrapped_key != env.read_header(io.BytesIO(second))[0].wrapped_key
    before = cache.stats()
    out = io.BytesIO()
    env.encrypt_stream(client, keyid, io.BytesIO(b"no size"), out, cache=cache, aad=b"tenant=a")
    assert cache.stats() == before  # a stream of unknown length bypasses the cache

    decrypting = DataKeyCache(max_age=60)
    for _ in range(3):
        assert env.decrypt_bytes(client, first, cache=decrypting) == b"1"
    assert (decrypting.stats().misses, decrypting.stats().hits) == (1, 2)
    assert "plaintext" not in repr(cache)
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(cache)


# ------------------------------------------------------------------------------------------ properties
@pytest.fixture(scope="module")
def shared_cache() -> DataKeyCache:
    return DataKeyCache(max_age=600)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300), chunk_size=st.integers(1, 70), flip=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_round_trip_and_tamper_properties(
    client: Client, keyid: str, shared_cache: DataKeyCache, data: bytes, chunk_size: int, flip: int, bit: int
) -> None:
    message = seal(client, keyid, data, chunk_size=chunk_size, cache=shared_cache)
    assert env.decrypt_bytes(client, message, cache=shared_cache) == data
    pos = _body_offset(message) + flip % (len(message) - _body_offset(message))
    damaged = bytearray(message)
    damaged[pos] ^= 1 << bit
    with pytest.raises(EnvelopeError):
        env.decrypt_bytes(client, bytes(damaged), cache=shared_cache)
