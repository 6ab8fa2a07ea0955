"""The SGX evidence provider of a node that runs under Gramine: its ``/dev/attestation`` pseudo-files.

Gramine (with ``sgx.remote_attestation = "dcap"``) gives an enclave three files: ``attestation_type`` ("dcap"),
``user_report_data`` (write the 64 bytes to bind) and ``quote`` (read: a DCAP quote of this enclave whose report
data is the bytes last written, made by the platform's quoting enclave). Writing and reading are one step under a
lock, so two threads never get each other's binding.

This cannot run outside an SGX enclave: the tests use a directory that imitates the files, and the test against
real Gramine is skipped with that reason (see docs/attestation.md).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

from ehsm_kms.provisioning.attest.base import Evidence, require_report_data
from ehsm_kms.provisioning.attest.errors import ProviderUnavailable

GRAMINE_ATTESTATION_DIR = Path("/dev/attestation")


class GramineSgxProvider:
    kind: ClassVar[str] = "sgx-dcap"

    def __init__(self, root: str | Path = GRAMINE_ATTESTATION_DIR) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def available(self) -> bool:
        return (self.root / "quote").exists()

    def evidence(self, report_data: bytes) -> Evidence:
        data = require_report_data(report_data)
        with self._lock:
            try:
                kind = (self.root / "attestation_type").read_text(encoding="ascii").strip()
                if kind != "dcap":
                    raise ProviderUnavailable(f"Gramine's attestation type is {kind!r}, not 'dcap'")
                (self.root / "user_report_data").write_bytes(data)
                quote = (self.root / "quote").read_bytes()
            except (OSError, UnicodeDecodeError) as exc:
                err = ProviderUnavailable("no SGX quote: this node does not run under Gramine with DCAP")
                err.add_note(f"{self.root}: {type(exc).__name__}: {exc}")
                raise err from None
        if not quote:
            raise ProviderUnavailable("Gramine returned an empty quote")
        return Evidence(self.kind, quote, {"source": "gramine"})
