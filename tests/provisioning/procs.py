"""Real dkeyserver (root, worker) and dkeycache processes for tests, and the swtpm-backed machine they prove.

Reusable by any suite that needs a provisioned cluster (the KMS cluster tests): :func:`start_root`,
:func:`start_worker`, :func:`start_cache` start ``python -m ehsm_kms.cli.main dkeyserver|dkeycache`` with the
given options and wait (bounded) until they listen; :func:`wait_ring` polls a cache socket until it serves a
ring (of at least a given version); :func:`write_tpm2_policy` writes a tpm2 policy trusting the EKs of the given
swtpm instances and the PCR values a fresh swtpm shows. Every wait is bounded and a process that fails shows
its log in the error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ehsm_kms import errors
from ehsm_kms.core.dk import DomainKeyRing
from ehsm_kms.core.ringfetch import fetch_ring
from ehsm_kms.provisioning.attest.tpm2 import Tpm2Provider, key_name
from tests.attest.conftest import PCRS
from tests.attest.swtpm import Swtpm
from tests.live import ROOT, free_port

PASSPHRASE_ENV = "EHSM_KMS_TEST_DKS_PASSPHRASE"
PASSPHRASE = "dkeyserver test passphrase, not a real one"


@dataclass
class Proc:
    name: str
    command: list[str]
    log_path: Path
    ready_line: str | None = None
    ready_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self, timeout: float = 30.0) -> Proc:
        env = dict(os.environ, **{PASSPHRASE_ENV: PASSPHRASE}, **self.env)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if self.ready_line and self.ready_line in self.log()[offset:]:
                return self
            if self.ready_path and self.ready_path.exists():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ehsm_kms.cli.main", *args]


@dataclass
class DkServerProc(Proc):
    port: int = 0
    data_dir: Path = Path()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cert(self) -> Path:
        return self.data_dir / "tls-cert.pem"


def start_root(
    data_dir: Path,
    policies: list[Path],
    *,
    port: int | None = None,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> DkServerProc:
    """A root with the passphrase sealer (from the env) unless ``extra`` names another sealer."""
    port = port or free_port()
    sealer = () if "--sealer" in extra else ("--sealer", "passphrase", "--sealer-secret", f"env:{PASSPHRASE_ENV}")
    command = _cli(
        "dkeyserver", "--role", "root", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
        *sealer, *(a for p in policies for a in ("--policy", str(p))), *extra,
    )  # fmt: skip
    proc = DkServerProc("root", command, data_dir / "root.log", ready_line=f"listening on 127.0.0.1:{port}",
                        port=port, data_dir=data_dir, env=env or {})  # fmt: skip
    return proc.start()  # type: ignore[return-value]


def start_worker(
    data_dir: Path,
    policies: list[Path],
    root: DkServerProc,
    evidence: tuple[str, ...],
    *,
    port: int | None = None,
    refresh: float = 0.5,
    extra: tuple[str, ...] = (),
) -> DkServerProc:
    port = port or free_port()
    command = _cli(
        "dkeyserver", "--role", "worker", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
        "--root", root.endpoint, "--root-ca", str(root.cert), *evidence,
        "--refresh-interval", str(refresh), "--backoff-initial", "0.1", "--backoff-max", "0.5",
        *(a for p in policies for a in ("--policy", str(p))), *extra,
    )  # fmt: skip
    proc = DkServerProc("worker", command, data_dir / "worker.log", ready_line=f"listening on 127.0.0.1:{port}",
                        port=port, data_dir=data_dir)  # fmt: skip
    return proc.start()  # type: ignore[return-value]


def start_cache(
    socket_path: Path,
    servers: list[DkServerProc],
    evidence: tuple[str, ...],
    *,
    log_path: Path,
    refresh: float = 0.5,
    extra: tuple[str, ...] = (),
) -> Proc:
    command = _cli(
        "dkeycache", *(a for s in servers for a in ("--server", s.endpoint, "--server-ca", str(s.cert))),
        "--socket", str(socket_path), *evidence,
        "--refresh-interval", str(refresh), "--backoff-initial", "0.1", "--backoff-max", "0.5", *extra,
    )  # fmt: skip
    return Proc("dkeycache", command, log_path, ready_line=f"dkeycache serving on {socket_path}").start()


def tpm2_evidence(tpm: Swtpm) -> tuple[str, ...]:
    return ("--evidence", "tpm2", "--tpm2-tcti", tpm.tcti, "--tpm2-pcrs", PCRS)


def wait_ring(socket_path: Path, *, min_version: int = 1, timeout: float = 30.0) -> DomainKeyRing:
    """The ring the cache at ``socket_path`` serves, once it serves one of at least ``min_version``."""
    deadline = time.monotonic() + timeout
    last = "nothing yet"
    while time.monotonic() < deadline:
        try:
            ring = fetch_ring(str(socket_path), timeout=5.0)
        except errors.EhsmError as exc:
            last = exc.message or type(exc).__name__
        else:
            if ring.current_version >= min_version:
                return ring
            last = f"version {ring.current_version}"
        time.sleep(0.1)
    raise AssertionError(f"the dkeycache at {socket_path} served no ring >= {min_version} in {timeout} s: {last}")


def write_tpm2_policy(path: Path, trusted: list[Swtpm], *, pcrs_of: Swtpm) -> Path:
    """A tpm2 policy trusting the EKs of ``trusted`` and the PCR values ``pcrs_of`` shows now."""
    names = []
    for tpm in trusted:
        provider = Tpm2Provider(tpm.tcti, pcrs=PCRS)
        try:
            names.append(key_name(provider.identity().ek_public).hex())
        finally:
            provider.close()
    provider = Tpm2Provider(pcrs_of.tcti, pcrs=PCRS)
    try:
        pcrs = provider.evidence(bytes(64)).claims["pcrs"]
    finally:
        provider.close()
    lines = ['kind = "tpm2"', "trusted_ek = [" + ", ".join(f'"{n}"' for n in names) + "]"]
    for bank, table in pcrs.items():
        lines.append(f"[pcrs.{bank}]")
        lines.extend(f'{i} = "{v}"' for i, v in sorted(table.items(), key=lambda kv: int(kv[0])))
    path.write_text("\n".join(lines) + "\n")
    return path


def last_audit(data_dir: Path) -> dict[str, object]:
    import json

    lines = (data_dir / "audit.jsonl").read_text().splitlines()
    record: dict[str, object] = json.loads(lines[-1])
    return record


def flush_transient(tpm: Swtpm) -> int:
    """Flush every transient object of ``tpm``: what the kernel's resource manager (``/dev/tpmrm0``) does when a
    process dies. swtpm has no resource manager, so the keys of a process killed with -9 stay loaded and fill
    the TPM's few object slots. Returns how many were flushed."""
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import TPM2_CAP, TPM2_HT

    flushed = 0
    with ESAPI(tpm.tcti) as ctx:
        _, data = ctx.get_capability(TPM2_CAP.HANDLES, TPM2_HT.TRANSIENT << 24, 64)
        for handle in data.data.handles:
            ctx.flush_context(ctx.tr_from_tpmpublic(handle))
            flushed += 1
    return flushed
