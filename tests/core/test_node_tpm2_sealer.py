"""A single-mode node whose DK ring is sealed by a TPM (``--sealer tpm2``), on a real swtpm."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attest.swtpm import running_swtpm
from tests.live import KmsClient, LiveServer, b64

AES = {"keyspec": "EH_AES_GCM_256", "origin": "EH_INTERNAL_KEY", "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT"}


def test_a_tpm2_sealed_node_restarts_on_its_tpm_and_not_on_another(tmp_path: Path) -> None:
    data, store = tmp_path / "data", f"sqlite:///{tmp_path / 'kms.db'}"
    with running_swtpm(tmp_path / "tpm") as tpm, running_swtpm(tmp_path / "other") as other:
        sealed = ["--sealer", "tpm2", "--sealer-tcti", tpm.tcti]
        server = LiveServer(data, store, extra=sealed).start()
        try:
            client = KmsClient(server.url)
            assert client.enroll()["code"] == 200
            keyid = client.ok("CreateKey", AES)["keyid"]
            ct = client.ok("Encrypt", {"keyid": keyid, "plaintext": b64(b"sealed by the TPM")})["ciphertext"]
            client.close()
        finally:
            server.stop()
        raw = (data / "domain-key.sealed").read_bytes()
        assert len(raw) > 64

        # Another TPM cannot open the sealed ring: the node refuses to start, and the file is left as it was.
        stranger = LiveServer(data, store, extra=["--sealer", "tpm2", "--sealer-tcti", other.tcti])
        with pytest.raises(RuntimeError, match="exited"):
            stranger.start(timeout=60)
        assert (data / "domain-key.sealed").read_bytes() == raw

        again = LiveServer(data, store, extra=sealed).start()
        try:
            same = KmsClient(again.url, client.appid, client.apikey)
            assert same.ok("Decrypt", {"keyid": keyid, "ciphertext": ct})["plaintext"] == b64(b"sealed by the TPM")
            same.close()
        finally:
            again.stop()
