"""Fixtures of the provisioning suite: one swtpm per "machine", and a running root + worker + dkeycache.

:func:`cluster` (module scope) is the one to reuse for a KMS cluster test: it starts a root (tpm2 sealer on its
own swtpm), a worker that fetches from the root with tpm2 evidence of its own swtpm, and a dkeycache that fetches
from the worker with tpm2 evidence of a third swtpm, serving on ``cluster.socket`` (0660, in a 0750 directory).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ehsm_kms.core import dk
from ehsm_kms.core.sealers.tpm2 import Tpm2Sealer
from ehsm_kms.provisioning.attest.tpm2 import Tpm2Provider
from tests.attest.conftest import PCRS, other_swtpm, swtpm  # noqa: F401 (fixtures)
from tests.attest.swtpm import Swtpm, running_swtpm
from tests.provisioning.procs import (
    DkServerProc,
    Proc,
    start_cache,
    start_root,
    start_worker,
    tpm2_evidence,
    write_tpm2_policy,
)


@dataclass
class Machines:
    root: Swtpm  # the root's sealer (and its evidence when it recovers)
    worker: Swtpm
    cache: Swtpm
    client: Swtpm  # the test process's own trusted machine
    extended: Swtpm  # trusted EK, but its PCR 16 gets extended
    stranger: Swtpm  # an EK no policy trusts


@dataclass
class Cluster:
    base: Path
    machines: Machines
    policy: Path
    none_policy: Path
    root: DkServerProc
    worker: DkServerProc
    cache: Proc
    socket: Path

    def root_ring(self) -> dk.DomainKeyRing:
        """The ring in the root's sealed file, opened here with the root's TPM."""
        return dk.load_or_create(Tpm2Sealer(self.machines.root.tcti), self.root.data_dir / "dk.sealed", create=False)

    def provider(self, tpm: Swtpm | None = None) -> Tpm2Provider:
        return Tpm2Provider((tpm or self.machines.client).tcti, pcrs=PCRS)

    def restart_cache(self) -> Proc:
        self.cache = start_cache(self.socket, [self.worker], tpm2_evidence(self.machines.cache),
                                 log_path=self.base / "cache.log")  # fmt: skip
        return self.cache

    def start_worker(self) -> DkServerProc:
        self.worker = start_worker(self.worker.data_dir, [self.policy], self.root, tpm2_evidence(self.machines.worker),
                                   port=self.worker.port)  # fmt: skip
        return self.worker

    def start_root(self) -> DkServerProc:
        self.root = start_root(self.root.data_dir, [self.policy, self.none_policy], port=self.root.port,
                               extra=("--sealer", "tpm2", "--sealer-tcti", self.machines.root.tcti))  # fmt: skip
        return self.root


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machines]:
    base = tmp_path_factory.mktemp("tpms")
    with contextlib.ExitStack() as stack:
        tpms = [stack.enter_context(running_swtpm(base / name)) for name in
                ("root", "worker", "cache", "client", "extended", "stranger")]  # fmt: skip
        yield Machines(*tpms)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, machines: Machines) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    trusted = [machines.root, machines.worker, machines.cache, machines.client, machines.extended]
    policy = write_tpm2_policy(base / "tpm2-policy.toml", trusted, pcrs_of=machines.client)
    none_policy = base / "none-policy.toml"
    none_policy.write_text('kind = "none"\n')
    sockdir = Path(tempfile.mkdtemp(prefix="ehsm-dkc-"))
    sockdir.chmod(0o750)
    procs: list[Proc] = []
    try:
        root = start_root(base / "root", [policy, none_policy],
                          extra=("--sealer", "tpm2", "--sealer-tcti", machines.root.tcti))  # fmt: skip
        procs.append(root)
        worker = start_worker(base / "worker", [policy], root, tpm2_evidence(machines.worker))
        procs.append(worker)
        cache = start_cache(sockdir / "cache.sock", [worker], tpm2_evidence(machines.cache),
                            log_path=base / "cache.log")  # fmt: skip
        procs.append(cache)
        c = Cluster(base, machines, policy, none_policy, root, worker, cache, sockdir / "cache.sock")
        yield c
        procs = [c.root, c.worker, c.cache]
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(sockdir, ignore_errors=True)
