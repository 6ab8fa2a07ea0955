"""encrypt-file and decrypt-file of a 2 GiB file in constant memory: peak RSS of each CLI process under 100 MB.

The input is streamed from a seeded generator (an AES-CTR keystream under a key derived from the seed), never held
in memory; its SHA-256 is taken on the way and compared with the decrypted file's. Each CLI run is the only child
of a small wrapper process, whose ``RUSAGE_CHILDREN.ru_maxrss`` is then exactly that run's peak resident set.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.cli.harness import Cli, Enrolled

SIZE = 2 << 30
BLOCK = 1 << 20
PEAK_RSS_LIMIT = 100 * 1000 * 1000  # bytes
WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "start = time.monotonic()\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, time.monotonic() - start, code)\n"
)


def _generate(path: Path, seed: bytes) -> str:
    key = hashlib.sha256(b"ehsm-kms test data " + seed).digest()
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(BLOCK)
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(SIZE // BLOCK):
            block = stream.update(zeros)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _measured(cli: Cli, *args: str) -> tuple[int, float]:
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, sys.executable, "-m", "ehsm_kms.cli.main", *args],
        capture_output=True,
        text=True,
        env=cli.process_env(),
        timeout=600,
        check=False,
    )
    peak, seconds, code = done.stdout.split()
    assert int(code) == 0, done.stderr
    return int(peak), float(seconds)


@pytest.mark.slow
def test_two_gib_file_round_trip_in_constant_memory(cli: Cli, enrolled: Enrolled, tmp_path: Path) -> None:
    plain, sealed, back = tmp_path / "big.bin", tmp_path / "big.bin.ehks", tmp_path / "big.out"
    expected = _generate(plain, b"2 GiB")
    keyid = cli.ok("key", "create").stdout.strip()
    try:
        enc_peak, enc_seconds = _measured(cli, "encrypt-file", "--keyid", keyid, "-q", str(plain), str(sealed))
        overhead = sealed.stat().st_size - SIZE - (SIZE // BLOCK + 1) * 16  # the header; 16 bytes per chunk
        assert 0 < overhead < 300
        plain.unlink()
        dec_peak, dec_seconds = _measured(cli, "decrypt-file", "-q", str(sealed), str(back))
        assert back.stat().st_size == SIZE and _sha256(back) == expected
    finally:
        for path in (plain, sealed, back):
            path.unlink(missing_ok=True)
    print(  # shown with -s: the figures the docs quote
        f"\n2 GiB: encrypt-file peak RSS {enc_peak / 1e6:.1f} MB in {enc_seconds:.1f} s, "
        f"decrypt-file peak RSS {dec_peak / 1e6:.1f} MB in {dec_seconds:.1f} s"
    )
    assert enc_peak < PEAK_RSS_LIMIT and dec_peak < PEAK_RSS_LIMIT
