"""Self-tests at core start: a known-answer test of every algorithm family.

A failed self-test raises :class:`ehsm_kms.errors.CoreStartError` and the core refuses to serve, with the reason.
Pairwise checks of generated asymmetric keys run at generation time (:mod:`ehsm_kms.core.families`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ehsm_kms import errors
from ehsm_kms.core import aes, ec, kdf, mac, rsa, sm2, sm4

log = logging.getLogger("ehsm_kms.core")

TESTS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("AES-GCM", aes.self_test),
    ("SM4", sm4.self_test),
    ("HMAC", mac.self_test),
    ("HKDF", kdf.self_test),
    ("RSA", rsa.self_test),
    ("ECDSA", ec.self_test),
    ("SM2", sm2.self_test),
)


def run_all() -> list[str]:
    """Run every known-answer test; return one line per algorithm, or raise CoreStartError with the reason."""
    report: list[str] = []
    for name, test in TESTS:
        start = time.perf_counter()
        try:
            test()
        except errors.CoreStartError:
            raise
        except Exception as exc:
            raise errors.CoreStartError(f"self-test failed: {name} ({type(exc).__name__})") from None
        report.append(f"{name}: ok ({(time.perf_counter() - start) * 1000:.1f} ms)")
    log.info("core self-tests passed: %s", ", ".join(line.split(":")[0] for line in report))
    return report
