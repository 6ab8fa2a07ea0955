"""The isolated core: a hardened child process behind an async proxy, restarted when it dies."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from pathlib import Path

import pytest

from ehsm_kms import errors
from ehsm_kms.core.coreconfig import CoreConfig
from ehsm_kms.core.protocol import AppCredential, Call, KeyRef
from ehsm_kms.core.proxy import IsolatedCore, LocalCore
from tests.signing import signed
from tests.softhsm import SoftHsm, Token


def config(tmp_path: Path, secret: bytes = b"correct horse battery staple") -> CoreConfig:
    return CoreConfig(sealer="passphrase", sealed_path=str(tmp_path / "dk.sealed"), secret=secret, scrypt_n=2**10)


async def _enroll_and_key(core: IsolatedCore | LocalCore) -> tuple[AppCredential, str, KeyRef]:
    made = await core.call(Call(op="enroll"))
    cred = AppCredential(made["appid"], made["apikey_blob"])
    payload = {
        "keyspec": "EH_AES_GCM_256",
        "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT",
        "origin": "EH_INTERNAL_KEY",
    }
    keyid = "00000000-0000-4000-8000-000000000001"
    req = signed(cred.appid, made["apikey"], payload)
    key = await core.call(Call(op="create_key", auth=req, app=cred, args={"keyid": keyid, "version": 1}))
    ref = KeyRef(keyid, cred.appid, 3, 1, 1, 1, key["blob"])
    return cred, made["apikey"], ref


def _encrypt_call(cred: AppCredential, apikey: str, ref: KeyRef, data: bytes) -> Call:
    payload = {"keyid": ref.keyid, "plaintext": base64.b64encode(data).decode()}
    return Call(op="encrypt", auth=signed(cred.appid, apikey, payload), app=cred, keys=[ref])


def test_child_is_hardened_and_serves_many_calls_in_flight(tmp_path: Path) -> None:
    async def run() -> None:
        core = IsolatedCore(config(tmp_path))
        await core.start()
        try:
            pid = core.pid
            assert pid is not None and pid != os.getpid()
            assert core.hardening["dumpable"] == 0
            assert core.hardening["core_limit"] == 0
            limits = Path(f"/proc/{pid}/limits").read_text()
            assert any(line.startswith("Max core file size") and " 0 " in line for line in limits.splitlines())
            # No file descriptor but its channel (0-2 are /dev/null).
            targets = sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
            assert targets[:3] == ["/dev/null"] * 3, targets
            assert len(targets) == 4 and targets[3].startswith("socket:"), targets
            if core.hardening["mlock"]:
                status = Path(f"/proc/{pid}/status").read_text()
                locked_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmLck")))
                assert locked_kb > 0

            cred, apikey, ref = await _enroll_and_key(core)
            calls = [_encrypt_call(cred, apikey, ref, f"message {i}".encode()) for i in range(200)]
            results = await asyncio.gather(*(core.call(c) for c in calls))
            assert len({r["ciphertext"] for r in results}) == 200
        finally:
            await core.close()
        assert core.pid is not None

    asyncio.run(run())


def test_dead_core_fails_calls_in_flight_and_is_restarted(tmp_path: Path) -> None:
    async def run() -> None:
        core = IsolatedCore(config(tmp_path))
        await core.start()
        try:
            cred, apikey, ref = await _enroll_and_key(core)
            first_pid = core.pid
            assert first_pid is not None
            # RSA-4096 key generation keeps the child busy while it is killed.
            slow = {
                "keyspec": "EH_RSA_4096",
                "keyusage": "EH_KEYUSAGE_SIGN_VERIFY",
                "origin": "EH_INTERNAL_KEY",
            }
            busy = [
                asyncio.ensure_future(
                    core.call(
                        Call(
                            op="create_key",
                            auth=signed(cred.appid, apikey, slow),
                            app=cred,
                            args={"keyid": f"00000000-0000-4000-8000-{i:012d}", "version": 1},
                        )
                    )
                )
                for i in range(4)
            ]
            await asyncio.sleep(0.05)
            os.kill(first_pid, signal.SIGKILL)
            outcomes = await asyncio.gather(*busy, return_exceptions=True)
            assert any(isinstance(o, errors.CoreUnavailable) for o in outcomes)
            assert all(isinstance(o, errors.CoreUnavailable | dict) for o in outcomes)
            for _ in range(200):  # bounded wait for the supervisor
                if core.pid != first_pid and core.hardening:
                    try:
                        result = await core.call(_encrypt_call(cred, apikey, ref, b"after restart"))
                        break
                    except errors.CoreUnavailable:
                        pass
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the core was not restarted")
            assert result["ciphertext"]
            assert core.restarts == 1
        finally:
            await core.close()

    asyncio.run(run())


def test_wrong_passphrase_refuses_to_start_with_reason(tmp_path: Path) -> None:
    async def run() -> None:
        core = IsolatedCore(config(tmp_path))
        await core.start()
        await core.close()
        sealed = (tmp_path / "dk.sealed").read_bytes()
        bad = IsolatedCore(config(tmp_path, secret=b"wrong"), restart=False)
        with pytest.raises(errors.CoreStartError, match="wrong passphrase"):
            await bad.start()
        assert (tmp_path / "dk.sealed").read_bytes() == sealed  # never a new DK over the old one

    asyncio.run(run())


def test_in_process_core_has_the_same_interface(tmp_path: Path) -> None:
    async def run() -> None:
        core = LocalCore(config(tmp_path))
        await core.start()
        try:
            cred, apikey, ref = await _enroll_and_key(core)
            out = await core.call(_encrypt_call(cred, apikey, ref, b"in process"))
            assert out["ciphertext"]
            with pytest.raises(errors.SignError):
                await core.call(_encrypt_call(cred, "w" * 32, ref, b"x"))
        finally:
            await core.close()

    asyncio.run(run())


@pytest.mark.softhsm
def test_dk_sealed_in_softhsm_survives_a_restart_of_the_isolated_core(
    tmp_path: Path, hsm_token: tuple[SoftHsm, Token]
) -> None:
    hsm, token = hsm_token

    def cfg(pin: str) -> CoreConfig:
        return CoreConfig(
            sealer="pkcs11", sealed_path=str(tmp_path / "dk.sealed"), pkcs11_module=hsm.module,
            pkcs11_token=token.label, secret=pin.encode(),
        )  # fmt: skip

    async def run() -> None:
        first = IsolatedCore(cfg(token.pin), restart=False)
        await first.start()
        cred, apikey, ref = await _enroll_and_key(first)
        ct = (await first.call(_encrypt_call(cred, apikey, ref, b"sealed in the token")))["ciphertext"]
        await first.close()

        wrong = IsolatedCore(cfg("0000"), restart=False)
        with pytest.raises(errors.CoreStartError, match="wrong PIN"):
            await wrong.start()

        second = IsolatedCore(cfg(token.pin), restart=False)
        await second.start()
        try:
            payload = {"keyid": ref.keyid, "ciphertext": ct}
            call = Call(op="decrypt", auth=signed(cred.appid, apikey, payload), app=cred, keys=[ref])
            out = await second.call(call)
            assert base64.b64decode(out["plaintext"]) == b"sealed in the token"
        finally:
            await second.close()

    asyncio.run(run())
