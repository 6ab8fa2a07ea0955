"""A KMS-like parent process for the memory-scan test: it runs an isolated core and never sees the DK or a CMK.

Protocol on stdin/stdout, one JSON object per line (driven by tests/core/test_memscan.py).
"""

from __future__ import annotations

import asyncio
import json
import sys

from ehsm_kms.core.coreconfig import CoreConfig
from ehsm_kms.core.protocol import AppCredential, Call, KeyRef
from ehsm_kms.core.proxy import IsolatedCore
from tests.signing import signed

KEYID = "00000000-0000-4000-8000-0000000000aa"


def say(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(sealed_path: str) -> None:
    core = IsolatedCore(CoreConfig(sealer="file", sealed_path=sealed_path, allow_file_sealer=True))
    await core.start()
    made = await core.call(Call(op="enroll"))
    cred, apikey = AppCredential(made["appid"], made["apikey_blob"]), made["apikey"]
    spec = {
        "keyspec": "EH_AES_GCM_256",
        "keyusage": "EH_KEYUSAGE_ENCRYPT_DECRYPT",
        "origin": "EH_EXTERNAL_KEY",
    }
    req = signed(cred.appid, apikey, spec)
    await core.call(Call(op="create_key", auth=req, app=cred, args={"keyid": KEYID, "version": 1}))
    ref = KeyRef(KEYID, cred.appid, 3, 1, 2, 1, b"")
    gp = {"keyid": KEYID, "keyspec": "EH_RSA_2048"}
    params = await core.call(
        Call(op="get_parameters_for_import", auth=signed(cred.appid, apikey, gp), app=cred, keys=[ref])
    )
    say({"pubkey": params["pubkey"], "core_pid": core.pid})
    wrapped = json.loads(sys.stdin.readline())["wrapped"]
    payload = {
        "keyid": KEYID,
        "padding_mode": "EH_RSA_PKCS1_OAEP",
        "key_material": wrapped,
        "importToken": params["importToken"],
    }
    args = {k: params[k] for k in ("wrapping_blob", "wrapping_spec", "token_id")}
    args["expires_ms"] = params["expires_ms"]
    done = await core.call(
        Call(
            op="import_key_material",
            auth=signed(cred.appid, apikey, payload),
            app=cred,
            keys=[ref],
            args=args,
        )
    )
    ref = KeyRef(KEYID, cred.appid, 3, 1, 2, 1, done["blob"])
    for i in range(20):
        enc = {"keyid": KEYID, "plaintext": "aGVsbG8=", "aad": ""}
        await core.call(Call(op="encrypt", auth=signed(cred.appid, apikey, enc), app=cred, keys=[ref]))
        del i
    say({"ready": True})
    sys.stdin.readline()
    await core.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
