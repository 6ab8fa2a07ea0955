"""TLS material for the server: a given certificate and key, or a self-signed pair made into the data directory.

The self-signed pair is made with the system ``openssl`` command (as the original did) so that no key-handling
library is loaded outside the core; the private key file is written 0600.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ehsm_kms import errors


def self_signed(data_dir: Path, host: str) -> tuple[Path, Path]:
    """Paths of the self-signed certificate and key, made on first use (P-256, 365 days)."""
    cert, key = data_dir / "tls-cert.pem", data_dir / "tls-key.pem"
    if cert.is_file() and key.is_file():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise errors.ConfigError("tls_self_signed needs the openssl command")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    san = f"IP:{host}" if host.replace(".", "").isdigit() or ":" in host else f"DNS:{host}"
    old_umask = os.umask(0o077)
    try:
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "365",
                "-subj",
                "/CN=ehsm-kms",
                "-addext",
                f"subjectAltName={san},DNS:localhost",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except subprocess.CalledProcessError as exc:
        raise errors.ConfigError(f"openssl could not make a certificate: {exc.stderr.decode()[-200:]}") from None
    finally:
        os.umask(old_umask)
    return cert, key
