"""Raw pyca/cryptography rates in one process: the reference for the RSA goal (same number of processes as the
isolated core, which signs in one process) and context for the others.

Run: ``python -m bench.raw_crypto --seconds 2`` (prints one JSON object).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def rate(fn: Callable[[], object], seconds: float, max_ops: int = 10_000_000) -> float:
    """Operations per second of ``fn`` over about ``seconds`` (bounded by ``max_ops``)."""
    fn()
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while done < max_ops:
        for _ in range(16):
            fn()
        done += 16
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - start)


def measure(seconds: float) -> dict[str, float]:
    message = os.urandom(64)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_sig = ec_key.sign(message, ec.ECDSA(hashes.SHA256()))
    ec_pub = ec_key.public_key()
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce, plaintext = os.urandom(12), os.urandom(1024)
    return {
        "rsa3072_sign_pkcs1_sha256": round(
            rate(lambda: rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256()), seconds), 1
        ),
        "ecdsa_p256_sign_sha256": round(rate(lambda: ec_key.sign(message, ec.ECDSA(hashes.SHA256())), seconds), 1),
        "ecdsa_p256_verify_sha256": round(
            rate(lambda: ec_pub.verify(ec_sig, message, ec.ECDSA(hashes.SHA256())), seconds), 1
        ),
        "aes256gcm_encrypt_1kib": round(rate(lambda: aead.encrypt(nonce, plaintext, None), seconds / 2), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(orjson.dumps(measure(args.seconds)).decode())


if __name__ == "__main__":
    main()
