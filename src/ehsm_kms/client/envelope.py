"""Envelope encryption of data of any size: one data key per message, AES-256-GCM chunks, constant memory.

Encrypt and Decrypt take at most 6 KiB. For more, :func:`encrypt_stream` asks the KMS for a data key
(GenerateDataKey), seals the data here in chunks with it, and writes a self-describing message: the header names
the CMK and carries the wrapped data key, so :func:`decrypt_stream` needs nothing but the message and a client
allowed to Decrypt with that CMK. Memory use is about two chunks, whatever the size of the data.

Message format, version 1 (integers big-endian)::

    header:
      magic          4   "EHKS"
      version        1   1
      suite          1   1 = AES-256-GCM chunks, HKDF-SHA-256 message key, 32-byte data key
      chunk size     4   plaintext bytes per chunk, 1 .. 64 MiB (default 1 MiB)
      message nonce 16   random
      keyid length   1   then the CMK's keyid, ASCII
      aad length     2   then the associated data, 0 .. 4096 bytes (stored in clear, authenticated)
      wrapped length 2   then the wrapped data key: GenerateDataKey's ciphertext, made with
                         aad = "ehsm-kms stream v1" ‖ 0x00 ‖ associated data
      header tag    16   AES-256-GCM tag over all header bytes above (empty plaintext)
    chunks:
      chunk i = AES-256-GCM(message key, prefix ‖ u32be(i), plaintext_i,
                            aad = SHA-256(header without its tag) ‖ u32be(i) ‖ u8(final)) = ciphertext ‖ tag(16)

Every chunk but the last holds exactly ``chunk size`` plaintext bytes; the last holds fewer (possibly none: a
message whose length is a multiple of the chunk size ends with an empty chunk) and is sealed with ``final = 1``.
The message key and the nonce prefix come from HKDF over the data key and the message nonce
(:mod:`ehsm_kms.core.stream`), so a cached data key never repeats a GCM nonce. Consequences:

* a changed byte anywhere fails (header: its tag and every chunk's AAD; chunk: its tag);
* reordered or swapped chunks fail (the index is in the nonce and the AAD);
* a truncated message fails: cut inside a chunk, that chunk fails; cut between chunks, the final chunk is missing;
* data appended after the final chunk fails;
* another CMK, or a changed keyid or associated data, fails at the KMS when the data key is unwrapped.

Decryption writes a chunk only after it verified, but it learns that the message is complete only at its end:
a consumer of :func:`decrypt_stream` must discard the output if it raises. :func:`decrypt_file` does that itself
(it writes a temporary file and renames it only after the final chunk verified).

An optional :class:`~ehsm_kms.client.cache.DataKeyCache` reuses data keys across messages within its bounds.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from ehsm_kms import errors
from ehsm_kms.client.cache import DataKeyCache
from ehsm_kms.client.errors import EnvelopeError
from ehsm_kms.client.results import DataKey
from ehsm_kms.core import stream as prim

MAGIC = b"EHKS"
VERSION = 1
SUITE = 1
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 64 << 20
MAX_AAD = 4096
MAX_WRAPPED = 8192
DATA_KEY_CONTEXT = b"ehsm-kms stream v1\x00"

_FIXED = struct.Struct(">4sBBI16sB")  # magic, version, suite, chunk size, message nonce, keyid length


class KeySource(Protocol):
    """What the envelope needs of a client (:class:`~ehsm_kms.client.Client` is one)."""

    @property
    def url(self) -> str: ...

    @property
    def appid(self) -> str | None: ...

    def generate_data_key(self, keyid: str, keylen: int = 32, *, aad: bytes | None = None) -> DataKey: ...

    def decrypt(self, keyid: str, ciphertext: bytes, *, aad: bytes | None = None) -> bytes: ...


Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Header:
    keyid: str
    wrapped_key: bytes
    chunk_size: int
    message_nonce: bytes
    aad: bytes = b""
    version: int = VERSION
    suite: int = SUITE

    def encode(self) -> bytes:
        """The header bytes the tag covers (everything but the tag)."""
        keyid = self.keyid.encode("ascii")
        if not 1 <= len(keyid) <= 255 or len(self.aad) > MAX_AAD or not 1 <= len(self.wrapped_key) <= MAX_WRAPPED:
            raise ValueError("keyid, associated data or wrapped data key out of range for the header")
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE or len(self.message_nonce) != prim.MESSAGE_NONCE_BYTES:
            raise ValueError("chunk size or message nonce out of range for the header")
        return b"".join(
            (
                _FIXED.pack(MAGIC, self.version, self.suite, self.chunk_size, self.message_nonce, len(keyid)),
                keyid,
                struct.pack(">H", len(self.aad)),
                self.aad,
                struct.pack(">H", len(self.wrapped_key)),
                self.wrapped_key,
            )
        )


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a message was: its CMK, associated data, chunk size, plaintext length and number of chunks."""

    keyid: str
    aad: bytes
    chunk_size: int
    plaintext_bytes: int
    chunks: int


# ---------------------------------------------------------------- reading and checking
def _read_exact(src: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the stream (pipes and sockets may return short reads)."""
    first = src.read(n)
    if first is None or len(first) == n or not first:
        return first or b""
    parts = [first]
    got = len(first)
    while got < n:
        more = src.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _need(src: BinaryIO, n: int, what: str) -> bytes:
    data = _read_exact(src, n)
    if len(data) != n:
        raise EnvelopeError(f"the encrypted stream is truncated inside its header ({what})")
    return data


def read_header(src: BinaryIO) -> tuple[Header, bytes, bytes]:
    """The header of a message, its encoded bytes and its tag (not yet checked: that needs the data key)."""
    fixed = _read_exact(src, _FIXED.size)
    if len(fixed) < 4 or fixed[:4] != MAGIC:
        raise EnvelopeError("not an ehsm-kms encrypted stream (no EHKS header)")
    if len(fixed) < _FIXED.size:
        raise EnvelopeError("the encrypted stream is truncated inside its header")
    _magic, version, suite, chunk_size, nonce, keyid_len = _FIXED.unpack(fixed)
    if version != VERSION:
        raise EnvelopeError(f"unsupported encrypted-stream format version {version} (this SDK reads {VERSION})")
    if suite != SUITE:
        raise EnvelopeError(f"unsupported encrypted-stream suite {suite}")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise EnvelopeError(f"the header's chunk size {chunk_size} is out of range")
    raw_keyid = _need(src, keyid_len, "keyid")
    aad_len = struct.unpack(">H", _need(src, 2, "aad length"))[0]
    if aad_len > MAX_AAD:
        raise EnvelopeError("the header's associated data is too long")
    aad = _need(src, aad_len, "aad")
    wrapped_len = struct.unpack(">H", _need(src, 2, "data key length"))[0]
    if not 1 <= wrapped_len <= MAX_WRAPPED:
        raise EnvelopeError("the header's wrapped data key length is out of range")
    wrapped = _need(src, wrapped_len, "data key")
    tag = _need(src, prim.TAG_BYTES, "tag")
    try:
        keyid = raw_keyid.decode("ascii")
    except UnicodeDecodeError:
        raise EnvelopeError("the header's keyid is not ASCII") from None
    if not keyid:
        raise EnvelopeError("the header names no keyid")
    header = Header(keyid, wrapped, chunk_size, nonce, aad, version, suite)
    return header, header.encode(), tag


def _check_aad(aad: bytes | None) -> bytes:
    value = b"" if aad is None else bytes(aad)
    if len(value) > MAX_AAD:
        raise ValueError(f"associated data is limited to {MAX_AAD} bytes")
    return value


def _partition(client: KeySource, *parts: object) -> tuple[object, ...]:
    return (client.url, client.appid, *parts)


# ---------------------------------------------------------------- encryption
def encrypt_stream(
    client: KeySource,
    keyid: str,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    aad: bytes | None = None,
    cache: DataKeyCache | None = None,
    size: int | None = None,
    on_progress: Progress | None = None,
) -> StreamInfo:
    """Encrypt everything ``src`` yields into ``dst`` under the CMK ``keyid`` (one GenerateDataKey).

    ``aad`` is stored in the header in clear and authenticated; ``size`` (the plaintext length, when known)
    lets ``cache`` reuse a data key. ``on_progress`` is called with the number of bytes read after each chunk.
    """
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}")
    context = _check_aad(aad)
    wrap_aad = DATA_KEY_CONTEXT + context
    partition = _partition(client, keyid, context)

    def fetch() -> DataKey:
        return client.generate_data_key(keyid, prim.DATA_KEY_BYTES, aad=wrap_aad)

    data_key = cache.encryption_key(partition, size, fetch) if cache is not None and size is not None else fetch()
    if len(data_key.plaintext) != prim.DATA_KEY_BYTES:
        raise EnvelopeError("the KMS returned a data key of the wrong length")
    header = Header(keyid, data_key.ciphertext, chunk_size, secrets.token_bytes(prim.MESSAGE_NONCE_BYTES), context)
    info = write_message(header, data_key.plaintext, src, dst, on_progress=on_progress)
    if cache is not None and size is not None and info.plaintext_bytes > size:
        cache.account(partition, data_key, info.plaintext_bytes - size)
    return info


def write_message(
    header: Header, data_key: bytes, src: BinaryIO, dst: BinaryIO, *, on_progress: Progress | None = None
) -> StreamInfo:
    """The format layer of :func:`encrypt_stream`: ``header``, its tag and the chunks of ``src``, sealed with
    ``data_key`` (the plaintext of ``header.wrapped_key``)."""
    chunk_size = header.chunk_size
    encoded = header.encode()
    message_key = prim.derive_message_key(data_key, header.message_nonce)
    dst.write(encoded)
    dst.write(prim.header_tag(message_key, encoded))
    digest = hashlib.sha256(encoded).digest()
    index = 0
    total = 0
    while True:
        block = _read_exact(src, chunk_size)
        final = len(block) < chunk_size
        if index > prim.MAX_CHUNK_INDEX:
            raise EnvelopeError("too much data for one message: use a larger chunk size")
        dst.write(prim.seal_chunk(message_key, digest, index, final, block))
        total += len(block)
        if on_progress is not None:
            on_progress(len(block))
        if final:
            break
        index += 1
    return StreamInfo(header.keyid, header.aad, chunk_size, total, index + 1)


# ---------------------------------------------------------------- decryption
def decrypt_stream(
    client: KeySource,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    aad: bytes | None = None,
    cache: DataKeyCache | None = None,
    on_progress: Progress | None = None,
) -> StreamInfo:
    """Decrypt a message from ``src`` into ``dst`` (one Decrypt of its data key, unless ``cache`` has it).

    With ``aad``, the message's associated data must equal it. Raises :class:`EnvelopeError` (a
    :class:`~ehsm_kms.errors.DecryptionFailed`) for a damaged, truncated or reordered message; what was written
    to ``dst`` before then must be discarded.
    """
    header, encoded, tag = read_header(src)
    if aad is not None and not secrets.compare_digest(bytes(aad), header.aad):
        raise EnvelopeError("the message's associated data is not the expected one")
    wrap_aad = DATA_KEY_CONTEXT + header.aad

    def fetch() -> bytes:
        try:
            return client.decrypt(header.keyid, header.wrapped_key, aad=wrap_aad)
        except errors.DecryptionFailed:
            raise EnvelopeError(
                f"the data key does not decrypt under key {header.keyid} (another key, or a changed header)"
            ) from None

    if cache is not None:
        data_key = cache.decryption_key(_partition(client, header.keyid, header.wrapped_key, header.aad), fetch)
    else:
        data_key = fetch()
    return read_message(header, encoded, tag, data_key, src, dst, on_progress=on_progress)


def read_message(
    header: Header,
    encoded: bytes,
    tag: bytes,
    data_key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    on_progress: Progress | None = None,
) -> StreamInfo:
    """The format layer of :func:`decrypt_stream`: check the header (from :func:`read_header`) with the unwrapped
    ``data_key``, then open the chunks that follow in ``src``."""
    if len(data_key) != prim.DATA_KEY_BYTES:
        raise EnvelopeError("the header's data key has the wrong length")
    message_key = prim.derive_message_key(data_key, header.message_nonce)
    try:
        prim.check_header_tag(message_key, encoded, tag)
    except errors.DecryptionFailed:
        raise EnvelopeError("the encrypted stream's header fails authentication (it was changed)") from None
    if on_progress is not None:
        on_progress(len(encoded) + len(tag))
    digest = hashlib.sha256(encoded).digest()
    frame = header.chunk_size + prim.TAG_BYTES
    index = 0
    total = 0
    while True:
        block = _read_exact(src, frame)
        final = len(block) < frame
        if final and len(block) < prim.TAG_BYTES:
            raise EnvelopeError(f"the encrypted stream is truncated: it ends before its final chunk (chunk {index})")
        if index > prim.MAX_CHUNK_INDEX:
            raise EnvelopeError("the encrypted stream has too many chunks")
        try:
            plaintext = prim.open_chunk(message_key, digest, index, final, block)
        except errors.DecryptionFailed:
            raise EnvelopeError(
                f"chunk {index} fails authentication: the encrypted stream was changed, reordered or truncated"
            ) from None
        dst.write(plaintext)
        total += len(plaintext)
        if on_progress is not None:
            on_progress(len(block))
        if final:
            break
        index += 1
    return StreamInfo(header.keyid, header.aad, header.chunk_size, total, index + 1)


# ---------------------------------------------------------------- bytes and files
def encrypt_bytes(
    client: KeySource,
    keyid: str,
    data: bytes,
    *,
    aad: bytes | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    cache: DataKeyCache | None = None,
) -> bytes:
    """:func:`encrypt_stream` of a bytes object."""
    out = io.BytesIO()
    encrypt_stream(client, keyid, io.BytesIO(data), out, chunk_size=chunk_size, aad=aad, cache=cache, size=len(data))
    return out.getvalue()


def decrypt_bytes(
    client: KeySource, message: bytes, *, aad: bytes | None = None, cache: DataKeyCache | None = None
) -> bytes:
    """:func:`decrypt_stream` of a bytes object."""
    out = io.BytesIO()
    decrypt_stream(client, io.BytesIO(message), out, aad=aad, cache=cache)
    return out.getvalue()


def _atomic_output(dst: Path) -> tuple[BinaryIO, Path]:
    """A new temporary file (mode 0600) beside ``dst``, renamed onto it only when complete."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    return os.fdopen(fd, "wb", buffering=1 << 20), Path(tmp)


def _finish(out: BinaryIO, tmp: Path, dst: Path, ok: bool) -> None:
    try:
        if ok:
            out.flush()
            os.fsync(out.fileno())
        out.close()
    finally:
        if ok:
            os.replace(tmp, dst)
        else:
            tmp.unlink(missing_ok=True)


def encrypt_file(
    client: KeySource,
    keyid: str,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    aad: bytes | None = None,
    cache: DataKeyCache | None = None,
    on_progress: Progress | None = None,
) -> StreamInfo:
    """Encrypt the file ``src`` into ``dst`` (written to a temporary file first, then renamed)."""
    target = Path(dst)
    with open(src, "rb", buffering=0) as fin:
        size = os.fstat(fin.fileno()).st_size
        out, tmp = _atomic_output(target)
        ok = False
        try:
            info = encrypt_stream(
                client,
                keyid,
                fin,
                out,
                chunk_size=chunk_size,
                aad=aad,
                cache=cache,
                size=size,
                on_progress=on_progress,
            )
            ok = True
        finally:
            _finish(out, tmp, target, ok)
    return info


def decrypt_file(
    client: KeySource,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    aad: bytes | None = None,
    cache: DataKeyCache | None = None,
    on_progress: Progress | None = None,
) -> StreamInfo:
    """Decrypt the file ``src`` into ``dst``; on any failure ``dst`` is left untouched and no plaintext remains."""
    target = Path(dst)
    with open(src, "rb", buffering=0) as fin:
        out, tmp = _atomic_output(target)
        ok = False
        try:
            info = decrypt_stream(client, fin, out, aad=aad, cache=cache, on_progress=on_progress)
            ok = True
        finally:
            _finish(out, tmp, target, ok)
    return info
