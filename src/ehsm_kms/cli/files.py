"""``encrypt-file`` and ``decrypt-file``: envelope encryption of data of any size (:mod:`ehsm_kms.client.envelope`).

One GenerateDataKey per file, AES-256-GCM chunks sealed here, constant memory. A file written by ``decrypt-file``
appears only after its last chunk verified; ``-`` streams standard input to standard output instead, and then the
exit status is what says whether the output may be used.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import click

from ehsm_kms.cli.options import Options, kms_command

_SIZE = re.compile(r"(\d+)\s*(b|k|kb|kib|m|mb|mib)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


class ByteSize(click.ParamType[int]):
    """A size in bytes: ``4096``, ``64KiB``, ``1MiB`` (binary units)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.fullmatch(str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not a size like 4096, 64KiB or 1MiB", param, ctx)
        return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


@contextmanager
def _progress(enabled: bool | None, length: int | None, label: str) -> Iterator[Callable[[int], None] | None]:
    show = enabled if enabled is not None else sys.stderr.isatty()
    if not show or not length:
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=False, show_percent=True) as bar:
        yield bar.update


@contextmanager
def _binary(path: str, mode: str) -> Iterator[BinaryIO]:
    """The file ``path``, or standard input / output for ``-`` (flushed, left open)."""
    if path == "-":
        stream = sys.stdin.buffer if mode == "rb" else sys.stdout.buffer
        try:
            yield stream
        finally:
            if mode == "wb":
                stream.flush()
        return
    fh: BinaryIO = open(path, "rb") if mode == "rb" else open(path, "wb")  # noqa: SIM115
    with fh:
        yield fh


def _check_target(dst: str, force: bool) -> None:
    if dst != "-" and os.path.exists(dst) and not force:
        raise click.UsageError(f"{dst} exists (give --force to replace it)")


def _size(path: str) -> int | None:
    return None if path == "-" else Path(path).stat().st_size


SRC = click.argument("src", type=click.Path(dir_okay=False, allow_dash=True))
DST = click.argument("dst", type=click.Path(dir_okay=False, allow_dash=True))
FORCE = click.option("--force", is_flag=True, help="Replace DST if it exists.")
PROGRESS = click.option(
    "--progress/--no-progress", default=None, help="Show a progress bar on standard error (default: on a terminal)."
)
QUIET = click.option("--quiet", "-q", is_flag=True, help="No summary on standard error.")


@click.command("encrypt-file")
@click.option("--keyid", required=True, help="The symmetric key that wraps the file's data key.")
@SRC
@DST
@click.option("--aad", help="Associated data (UTF-8 text), stored in the header and authenticated.")
@click.option("--chunk-size", type=ByteSize(), default="1MiB", show_default=True, help="Plaintext bytes per chunk.")
@FORCE
@PROGRESS
@QUIET
@kms_command
def encrypt_file(
    opts: Options,
    keyid: str,
    src: str,
    dst: str,
    aad: str | None,
    chunk_size: int,
    force: bool,
    progress: bool | None,
    quiet: bool,
) -> None:
    """Encrypt SRC into DST ('-': standard input / output) with a fresh data key under --keyid."""
    from ehsm_kms.client import envelope

    _check_target(dst, force)
    context = aad.encode("utf-8") if aad else None
    with opts.client() as client, _progress(progress, _size(src), "encrypting") as tick:
        if src != "-" and dst != "-":
            info = envelope.encrypt_file(client, keyid, src, dst, chunk_size=chunk_size, aad=context, on_progress=tick)
        else:
            with _binary(src, "rb") as fin, _binary(dst, "wb") as fout:
                info = envelope.encrypt_stream(
                    client, keyid, fin, fout, chunk_size=chunk_size, aad=context, on_progress=tick
                )
    summary = {
        "keyid": info.keyid,
        "plaintextBytes": info.plaintext_bytes,
        "chunks": info.chunks,
        "chunkSize": info.chunk_size,
    }
    if opts.as_json and dst != "-":
        opts.emit(summary)
    elif not quiet:
        click.echo(f"encrypted {info.plaintext_bytes} bytes in {info.chunks} chunks under {info.keyid}", err=True)


@click.command("decrypt-file")
@SRC
@DST
@click.option("--aad", help="The associated data the file must have been encrypted with.")
@FORCE
@PROGRESS
@QUIET
@kms_command
def decrypt_file(
    opts: Options, src: str, dst: str, aad: str | None, force: bool, progress: bool | None, quiet: bool
) -> None:
    """Decrypt SRC (made by encrypt-file) into DST; DST appears only if all of SRC verified."""
    from ehsm_kms.client import envelope

    _check_target(dst, force)
    expected = aad.encode("utf-8") if aad is not None else None
    with opts.client() as client, _progress(progress, _size(src), "decrypting") as tick:
        if src != "-" and dst != "-":
            info = envelope.decrypt_file(client, src, dst, aad=expected, on_progress=tick)
        else:
            with _binary(src, "rb") as fin, _binary(dst, "wb") as fout:
                info = envelope.decrypt_stream(client, fin, fout, aad=expected, on_progress=tick)
    summary = {
        "keyid": info.keyid,
        "plaintextBytes": info.plaintext_bytes,
        "chunks": info.chunks,
        "chunkSize": info.chunk_size,
    }
    if opts.as_json and dst != "-":
        opts.emit(summary)
    elif not quiet:
        click.echo(f"decrypted {info.plaintext_bytes} bytes in {info.chunks} chunks (key {info.keyid})", err=True)
