"""Fill a store with many AES-256 CMKs quickly, each with its own keyblob made by the core's code.

One CreateKey request per key would take the better part of an hour for a million keys, so this benchmark-only tool
does what the core's ``create_key`` operation does, in a loop and without the HTTP, signature and replay steps:
it opens the same sealed domain key as the server (same settings, same passphrase), and for every row draws fresh
key material (:func:`ehsm_kms.core.families.generate`) and wraps it with :meth:`ehsm_kms.core.enclave.Enclave.wrap_cmk`,
so each blob is bound to its own keyid, appid, spec, usage, origin and version exactly as a served CreateKey's is.
Rows go in through the store's ``bulk_create_keys`` (the same INSERT statements as ``create_key``, batched).

Wrapping runs in a second process (the only one that opens the domain key), a batch ahead of the inserts. The server
must be stopped while this runs (it writes the SQLite file directly). It is a set-up tool for benchmark data, never
part of a deployment.

Run: ``python -m bench.bulk_keys --data-dir D --store-url URL --appid A --count N --out keyids.txt``
(the passphrase comes from ``$EHSM_BENCH_PASSPHRASE``, as for the benchmark server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import msgspec
import orjson

from ehsm_kms import config
from ehsm_kms.core import families
from ehsm_kms.core.bootstrap import open_ring
from ehsm_kms.core.enclave import Enclave
from ehsm_kms.core.protocol import KeyRef
from ehsm_kms.core.specs import LIMITS, KeySpec, KeyUsage, Origin
from ehsm_kms.server.assemble import core_config
from ehsm_kms.storage import SqliteStore, Store, open_store
from ehsm_kms.storage.records import KeyRecord, KeyVersionRecord

BATCH = 10_000
AHEAD = 2
LOADER_CACHE_KIB = 512 * 1024
SPEC, USAGE, ORIGIN = KeySpec.EH_AES_GCM_256, KeyUsage.EH_KEYUSAGE_ENCRYPT_DECRYPT, Origin.EH_INTERNAL_KEY

Item = tuple[KeyRecord, KeyVersionRecord]
_worker: dict[str, Any] = {}


def _settings(data_dir: str, store_url: str, passphrase_env: str) -> config.Settings:
    return config.load(
        overrides={
            "data_dir": data_dir,
            "store_url": store_url,
            "sealer": "passphrase",
            "sealer_secret": f"env:{passphrase_env}",
        }
    )


def _start_worker(data_dir: str, store_url: str, passphrase_env: str, appid: str) -> None:
    """In the wrapping process: open the sealed domain key once (never create one)."""
    cfg = msgspec.structs.replace(
        core_config(_settings(data_dir, store_url, passphrase_env)), create=False, run_self_tests=False
    )
    _worker["enclave"] = Enclave(open_ring(cfg), run_self_tests=False)
    _worker["appid"] = appid


def _make_batch(n: int) -> tuple[list[Item], float]:
    """``n`` new keys, as the core's create_key makes them: fresh material, wrapped and bound to the new row."""
    enclave: Enclave = _worker["enclave"]
    appid: str = _worker["appid"]
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    items: list[Item] = []
    for _ in range(n):
        keyid = str(uuid.uuid4())
        ref = KeyRef(keyid, appid, int(SPEC), int(USAGE), int(ORIGIN), 1, b"")
        blob = enclave.wrap_cmk(ref, families.generate(SPEC))
        key = KeyRecord(
            keyid=keyid,
            appid=appid,
            keyspec=SPEC.name,
            usage=USAGE.name,
            origin=ORIGIN.name,
            state=1,
            creation_ms=now,
            expire_ms=now + LIMITS.cmk_lifetime_ms,
        )
        items.append((key, KeyVersionRecord(keyid, 1, blob, now)))
    return items, time.perf_counter() - t0


def _loader_store(url: str) -> Store:
    """The store, with a large page cache for this loader's SQLite connections (a connection setting, not kept in
    the file: the server later opens the same file with its own default). Random keyids make every insert land on a
    random page of two indexes; with the default cache most inserts would wait on a page read."""
    store = open_store(url)
    if isinstance(store, SqliteStore):
        with contextlib.suppress(TypeError):
            return SqliteStore(store.path, cache_kib=LOADER_CACHE_KIB)
    return store


async def fill(
    data_dir: str, store_url: str, appid: str, count: int, out: Path, passphrase_env: str
) -> dict[str, float]:
    """Wrapping runs in a second process, a batch ahead of the inserts, so the two overlap on two cores."""
    store = _loader_store(_settings(data_dir, store_url, passphrase_env).store)
    await store.migrate()
    wrap_s = insert_s = 0.0
    made = 0
    started = time.perf_counter()
    sizes = iter([min(BATCH, count - i) for i in range(0, count, BATCH)])
    ctx = multiprocessing.get_context("spawn")
    try:
        with (
            ctx.Pool(1, initializer=_start_worker, initargs=(data_dir, store_url, passphrase_env, appid)) as pool,
            out.open("a") as ids,
        ):
            # At most AHEAD batches wrapped and not yet inserted: memory stays bounded whatever the count.
            pending = deque(pool.apply_async(_make_batch, (n,)) for n in itertools.islice(sizes, AHEAD))
            while pending:
                items, seconds = pending.popleft().get(timeout=600)
                n = next(sizes, None)
                if n is not None:
                    pending.append(pool.apply_async(_make_batch, (n,)))
                t1 = time.perf_counter()
                await store.bulk_create_keys(items)
                insert_s += time.perf_counter() - t1
                wrap_s += seconds
                ids.write("".join(k.keyid + "\n" for k, _ in items))
                made += len(items)
        total = await store.count_keys()
    finally:
        await store.close()
    return {
        "keys_made": made,
        "keys_in_store": total,
        "seconds": round(time.perf_counter() - started, 2),
        "wrap_seconds": round(wrap_s, 2),
        "insert_seconds": round(insert_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--store-url", required=True)
    parser.add_argument("--appid", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--passphrase-env", default="EHSM_BENCH_PASSPHRASE")
    args = parser.parse_args()
    report = asyncio.run(fill(args.data_dir, args.store_url, args.appid, args.count, args.out, args.passphrase_env))
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()
