"""DESIGN invariant 1, shown on real memory: the DK and a CMK's plaintext live in the core process only.

A parent process (tests/core/memscan_parent.py) runs the isolated core as the KMS server does, imports a CMK whose
plaintext this test chose (BYOK: only the RSA-wrapped form passes through the parent), and uses it. Then this test
reads ``/proc/<pid>/mem`` of both processes and looks for the 32-byte DK and the 32-byte CMK.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ehsm_kms.core import dk
from ehsm_kms.core.sealers.file import FileSealer

ROOT = Path(__file__).resolve().parents[2]


def occurrences(pid: int, needle: bytes) -> int:
    """How many times ``needle`` is in the readable memory of process ``pid``."""
    count = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            try:
                mem.seek(start)
                region = mem.read(end - start)
            except OSError:
                continue
            count += region.count(needle)
    return count


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs /proc/<pid>/mem (Linux)")
def test_dk_and_cmk_only_in_the_core_process(tmp_path: Path) -> None:
    dk_bytes, cmk_bytes = os.urandom(32), os.urandom(32)
    sealed = tmp_path / "dk.sealed"
    dk.save(FileSealer(allow=True), sealed, dk.DomainKeyRing({1: dk_bytes}, 1))

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.core.memscan_parent", str(sealed)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        hello = json.loads(proc.stdout.readline())
        pub = serialization.load_pem_public_key(hello["pubkey"].encode())
        assert isinstance(pub, rsa.RSAPublicKey)
        wrapped = pub.encrypt(cmk_bytes, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
        proc.stdin.write(json.dumps({"wrapped": base64.b64encode(wrapped).decode()}) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"ready": True}

        core_pid = int(hello["core_pid"])
        in_core = {"DK": occurrences(core_pid, dk_bytes), "CMK": occurrences(core_pid, cmk_bytes)}
        in_parent = {"DK": occurrences(proc.pid, dk_bytes), "CMK": occurrences(proc.pid, cmk_bytes)}
        print(f"occurrences in core pid {core_pid}: {in_core}; in parent pid {proc.pid}: {in_parent}")
        assert in_core["DK"] > 0 and in_core["CMK"] > 0, in_core
        assert in_parent == {"DK": 0, "CMK": 0}
    finally:
        proc.stdin.write("quit\n")
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
