"""The benchmark matrix: our server in three configurations, the ceiling and the peer, in one run.

``bash bench/run.sh [--quick] [--profile]`` runs it; see bench/README.md. Results: ``bench/results/<stamp>.json``
(every run), ``docs/performance.md`` and ``docs/performance.png``.

Each cell (target, workload, connections) is a warm-up run and then ``--runs`` measured runs. A run replays a pool of
unique pre-signed requests once each (bench/replay.lua); pools are signed just before their run and sized from the
rate measured so far, so every run lasts about ``--seconds``. A run in which any answer lacks code 200, or any
request went unanswered, is invalid; cell figures are medians over the valid measured runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine, pool, profiling, report, servers, wrkrun
from bench.workloads import (
    BY_SLUG,
    LIST_KEYS,
    WORKLOADS,
    App,
    KmsFixture,
    encrypt_bodies_for,
    enroll,
    kms_bodies,
    kms_path,
    list_key_setup_bodies,
    moto_bodies,
    moto_headers,
    setup_kms,
    setup_moto,
)

ROOT = Path(__file__).resolve().parents[1]
PG_DSN = os.environ.get("EHSM_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
JSON_HEADERS = ("Content-Type: application/json",)
MAX_POOL = 400_000
GOAL_CONNECTIONS = 64


@dataclass(frozen=True)
class Config:
    key: str
    title: str
    store: str  # "sqlite" | "postgres"
    core: str  # "isolated" | "inprocess"
    workers: int = 1  # serve --workers
    # A configuration may cover only some workloads and connection counts (to keep the whole run under 30 minutes).
    only_workloads: tuple[str, ...] = ()
    only_connections: tuple[int, ...] = ()


CONFIGS = (
    Config("sqlite-isolated", "SQLite, isolated core", "sqlite", "isolated"),
    Config("sqlite-inprocess", "SQLite, in-process core", "sqlite", "inprocess"),
    Config("pg-isolated", "PostgreSQL, isolated core", "postgres", "isolated"),
    Config(
        "sqlite-isolated-w2",
        "SQLite, isolated core, 2 workers",
        "sqlite",
        "isolated",
        workers=2,
        only_workloads=("encrypt", "gdk", "sign_ec", "create_key"),
        only_connections=(16, 64, 256),
    ),
)
CONFIG_BY_KEY = {c.key: c for c in CONFIGS}
PEER_WORKLOADS = tuple(w.slug for w in WORKLOADS if w.peer_target)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description="Run the benchmark matrix and write docs/performance.md.")
    p.add_argument("--quick", action="store_true", help="1 run per cell, 3 concurrencies, 100k keys at scale")
    p.add_argument("--profile", action="store_true", help="also profile server and core under Encrypt (py-spy)")
    p.add_argument("--runs", type=int, help="measured runs per cell (default 3; quick 1)")
    p.add_argument("--seconds", type=float, help="target length of a measured run (default 2; quick 1)")
    p.add_argument("--warmup-seconds", type=float, help="target length of the warm-up run (default 0.75; quick 0.5)")
    p.add_argument("--concurrency", help="comma-separated connection counts (default 1,4,16,64,256; quick 1,16,64)")
    p.add_argument("--configs", default=",".join(c.key for c in CONFIGS), help="comma-separated configurations")
    p.add_argument("--workloads", default=",".join(w.slug for w in WORKLOADS), help="comma-separated workloads")
    p.add_argument("--scale-keys", type=int, help="CMKs in the scale store (default 1,000,000; quick 100,000)")
    p.add_argument("--no-peer", action="store_true", help="skip moto")
    p.add_argument("--no-ceiling", action="store_true", help="skip the ceiling")
    p.add_argument("--no-scale", action="store_true", help="skip the scale runs")
    p.add_argument("--profile-seconds", type=float, default=10.0, help="length of each profiled load")
    p.add_argument("--log-level", default="info", help="server log level (default: the server's default, info)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "performance.png")
    p.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--keep", action="store_true", help="keep the work directory (data, logs, pools)")
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.seconds = args.seconds or (1.0 if args.quick else 2.0)
    args.warmup_seconds = args.warmup_seconds or (0.5 if args.quick else 0.75)
    args.concurrency = [int(x) for x in (args.concurrency or ("1,16,64" if args.quick else "1,4,16,64,256")).split(",")]
    args.scale_keys = args.scale_keys or (100_000 if args.quick else 1_000_000)
    args.configs = [CONFIG_BY_KEY[k] for k in args.configs.split(",") if k]
    args.workloads = [BY_SLUG[s] for s in args.workloads.split(",") if s]
    return args


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


class Bench:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.started = time.monotonic()
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.work = Path(tempfile.mkdtemp(prefix="ehsm-bench-"))
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.pool_path = self.work / "pool.txt"
        args.results_dir.mkdir(parents=True, exist_ok=True)
        self.results_path = args.results_dir / f"{self.stamp}.json"
        self.results: dict[str, Any] = {
            "stamp": self.stamp,
            "command": "bash bench/run.sh" + "".join(f" {a}" for a in argv),
            "options": {
                "quick": args.quick,
                "runs": args.runs,
                "seconds": args.seconds,
                "warmup_seconds": args.warmup_seconds,
                "concurrency": args.concurrency,
                "configs": [c.key for c in args.configs],
                "workloads": [w.slug for w in args.workloads],
                "scale_keys": args.scale_keys,
                "log_level": args.log_level,
                "wrk_threads": 1,
            },
            "configs": {c.key: c.title for c in CONFIGS},
            "workload_titles": {w.slug: w.title for w in WORKLOADS},
            "cells": [],
            "rss": {},
            "failures": [],
        }
        self._seed = 0

    # ---------------------------------------------------------------- plumbing
    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed / 60:5.1f} min] {message}", flush=True)

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.results_path.write_text(json.dumps(self.results, indent=1))

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.log(f"== {name}")
        try:
            yield
        except Exception as exc:
            self.log(f"!! {name} failed: {type(exc).__name__}: {exc}")
            self.results["failures"].append({"phase": name, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            traceback.print_exc()
        finally:
            self.save()

    def seed(self) -> int:
        self._seed += 1
        return self._seed

    def size(self, rate: float, seconds: float, connections: int, *, warmup: bool = False) -> int:
        """Requests for a run of about ``seconds`` at ``rate``: at least two per connection (one for a warm-up)."""
        floor = connections if warmup else 2 * connections
        return int(min(max(rate * seconds, floor, 100), MAX_POOL))

    def one_run(
        self,
        url: str,
        make: Callable[[int], bytes],
        count: int,
        connections: int,
        rate: float,
        *,
        check: str,
        headers: tuple[str, ...] | list[str],
        procs: dict[str, int],
    ) -> wrkrun.RunResult:
        pool.write_pool(self.pool_path, count, make)
        before = {role: machine.cpu_seconds(pid) for role, pid in procs.items()}
        busy_before, t0 = machine.machine_busy_seconds(), time.monotonic()
        bound = count / max(rate / 8, 1.0) + 15
        result = wrkrun.run(url, self.pool_path, count, connections, check=check, headers=headers, max_seconds=bound)
        wall, busy = time.monotonic() - t0, machine.machine_busy_seconds() - busy_before
        spent: dict[str, float] = {}
        for role, pid in procs.items():  # "server#1", "core#1" ... (workers) add up under "server", "core"
            base = role.split("#", 1)[0]
            spent[base] = spent.get(base, 0.0) + machine.cpu_seconds(pid) - before[role]
        result.cpu = {role: round(seconds, 3) for role, seconds in spent.items()}
        ours = sum(result.cpu.values()) + result.wrk_cpu_s
        result.wall_s = round(wall, 3)
        result.other_cpu_share = round(max(busy - ours, 0.0) / (wall * (os.cpu_count() or 1)), 3) if wall > 0 else 0.0
        gone = [role for role, pid in procs.items() if not machine.alive(pid)]
        if gone:
            raise RuntimeError(f"{', '.join(gone)} process exited during a run ({result.note or 'no note'})")
        return result

    def cell(
        self,
        *,
        target: str,
        config: str,
        workload: str,
        connections: int,
        url: str,
        make: Callable[[int], bytes],
        rate: float,
        check: str = "code",
        headers: tuple[str, ...] | list[str] = JSON_HEADERS,
        procs: dict[str, int] | None = None,
        runs: int | None = None,
    ) -> dict[str, Any]:
        """Warm-up, then the measured runs; returns (and records) the cell with its medians."""
        procs = procs or {}
        warm = self.one_run(
            url, make, self.size(rate, self.args.warmup_seconds, connections, warmup=True), connections, rate,
            check=check, headers=headers, procs=procs,
        )  # fmt: skip
        if warm.valid and warm.rps > 0:
            rate = warm.rps
        measured = []
        for _ in range(runs or self.args.runs):
            r = self.one_run(
                url, make, self.size(rate, self.args.seconds, connections), connections, rate,
                check=check, headers=headers, procs=procs,
            )  # fmt: skip
            if r.valid and r.rps > 0:
                rate = r.rps
            measured.append(r)
        good = [r for r in measured if r.valid] or measured
        roles = sorted({role.split("#", 1)[0] for role in procs})
        cpu_per_req = {role: _median([r.cpu.get(role, 0.0) / r.good * 1e6 for r in good if r.good]) for role in roles}
        cell = {
            "target": target,
            "config": config,
            "workload": workload,
            "connections": connections,
            "valid": all(r.valid for r in measured) and bool(measured),
            "rps": _median([r.rps for r in good]),
            "p50_ms": _median([r.p50_ms for r in good]),
            "p99_ms": _median([r.p99_ms for r in good]),
            "cpu_us_per_request": cpu_per_req,
            "wrk_cpu_us_per_request": _median([r.wrk_cpu_s / r.good * 1e6 for r in good if r.good]),
            "warmup": warm.as_dict(),
            "runs": [r.as_dict() for r in measured],
        }
        self.results["cells"].append(cell)
        flag = "" if cell["valid"] else "  INVALID: " + "; ".join(r.note for r in measured if r.note)[:300]
        self.log(
            f"   {target:8} {config:17} {workload:11} c={connections:<3} {cell['rps']:9.1f} req/s  "
            f"p50 {cell['p50_ms']:7.2f} ms  p99 {cell['p99_ms']:7.2f} ms{flag}"
        )
        return cell

    # ---------------------------------------------------------------- phases
    def machine_info(self) -> None:
        self.results["machine"] = machine.describe(ROOT, pg_version())

    def raw_crypto(self) -> None:
        seconds = "1" if self.args.quick else "2"
        out = subprocess.run(
            [sys.executable, "-m", "bench.raw_crypto", "--seconds", seconds],
            capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
        )  # fmt: skip
        self.results["raw_crypto"] = json.loads(out.stdout)
        self.log(f"   raw cryptography, one process: {self.results['raw_crypto']}")

    def ceiling(self) -> None:
        proc = servers.ceiling(self.logs).start()
        try:
            signer = App("00000000-0000-4000-8000-000000000000", "A" * 32)
            fx = KmsFixture(signer, signer, "1" * 36, "", "", "", "", "")
            for c in self.args.concurrency:
                self.cell(
                    target="ceiling", config="ceiling", workload="encrypt", connections=c,
                    url=proc.url + kms_path("Encrypt"), make=kms_bodies("encrypt", fx, self.seed()),
                    rate=3000, procs={"server": proc.pid},
                )  # fmt: skip
            self.results["rss"]["ceiling"] = rss(proc)
        finally:
            proc.stop()

    def peer(self) -> None:
        proc = servers.moto(self.logs).start()
        try:
            fx = setup_moto(proc.url)
            for w in self.args.workloads:
                if w.slug not in PEER_WORKLOADS or w.peer_target is None:
                    continue
                for c in self.args.concurrency:
                    self.cell(
                        target="moto", config="moto", workload=w.slug, connections=c, url=proc.url + "/",
                        make=moto_bodies(w.slug, fx, self.seed()), rate=300, check="status",
                        headers=moto_headers(w.peer_target), procs={"server": proc.pid},
                    )  # fmt: skip
            self.results["rss"]["moto"] = rss(proc)
        finally:
            proc.stop()

    def configuration(self, cfg: Config) -> None:
        data = self.work / cfg.key
        schema = ""
        if cfg.store == "sqlite":
            store_url = f"sqlite:///{data / 'kms.db'}"
        else:
            schema = f"ehsm_bench_{secrets.token_hex(4)}"
            store_url = f"{PG_DSN}?schema={schema}"
            self.results.setdefault("pg_schemas", []).append(schema)
        proc = servers.kms(
            data, store_url, cfg.core, self.logs, log_level=self.args.log_level, tag=cfg.key, workers=cfg.workers
        )
        try:
            proc.start()
            procs = proc.processes()
            fx = setup_kms(proc.url)
            rates: dict[str, float] = {}
            for w in self.args.workloads:
                if cfg.only_workloads and w.slug not in cfg.only_workloads:
                    continue
                if w.slug == "list_key":
                    self.fill_list_app(proc.url, fx, procs)
                rate = w.guess_rps
                for c in self.args.concurrency:
                    if cfg.only_connections and c not in cfg.only_connections:
                        continue
                    cell = self.cell(
                        target="kms", config=cfg.key, workload=w.slug, connections=c,
                        url=proc.url + kms_path(w.action), make=kms_bodies(w.slug, fx, self.seed()),
                        rate=rates.get(w.slug, rate), procs=procs,
                    )  # fmt: skip
                    if cell["rps"] > 0:
                        rates[w.slug] = cell["rps"]
            self.results["rss"][cfg.key] = rss(proc)
        finally:
            proc.stop()
            if schema:
                drop_schema(schema)

    def fill_list_app(self, url: str, fx: KmsFixture, procs: dict[str, int]) -> None:
        """The ListKey app's 1,000 keys, made by 1,000 signed CreateKey requests."""
        r = self.one_run(
            url + kms_path("CreateKey"), list_key_setup_bodies(fx), LIST_KEYS, 16, 500,
            check="code", headers=JSON_HEADERS, procs=procs,
        )  # fmt: skip
        if not r.valid:
            raise RuntimeError(f"making the ListKey app's keys failed: {r.note}")

    def scale(self) -> None:
        """Encrypt on random keys of a 1,000-key store, then of the same store grown to ``--scale-keys`` keys."""
        data = self.work / "scale"
        store_url = f"sqlite:///{data / 'kms.db'}"
        ids_path = self.work / "scale-keyids.txt"
        proc = servers.kms(data, store_url, "isolated", self.logs, log_level=self.args.log_level, tag="scale")
        proc.start()
        try:
            import httpx

            with httpx.Client(base_url=proc.url, timeout=60.0) as http:
                app = enroll(http)
        finally:
            proc.stop()
        scale: dict[str, Any] = {"connections": GOAL_CONNECTIONS, "stores": []}
        self.results["scale"] = scale
        made = 0
        for target in (1000, self.args.scale_keys):
            fill = self.bulk(data, store_url, app, target - made, ids_path)
            made = target
            keyids = ids_path.read_text().split()
            proc.start()
            try:
                procs = proc.processes()
                cell = self.cell(
                    target="kms", config="sqlite-isolated", workload=f"encrypt_random_{target}",
                    connections=GOAL_CONNECTIONS, url=proc.url + kms_path("Encrypt"),
                    make=encrypt_bodies_for(app, keyids, self.seed()), rate=2000, procs=procs,
                )  # fmt: skip
                scale["stores"].append({"keys": target, "fill": fill, "cell": cell, "rss": rss(proc)})
                if self.args.profile and target == self.args.scale_keys:
                    make = encrypt_bodies_for(app, keyids, self.seed())
                    self.results.setdefault("profiles", {})[f"encrypt_random_{target}"] = self.profile_one(
                        proc, make, f"encrypt_random_{target}", "Encrypt", "sqlite-isolated"
                    )
            finally:
                proc.stop()
            self.save()

    def bulk(self, data: Path, store_url: str, app: App, count: int, out: Path) -> dict[str, Any]:
        self.log(f"   bulk: {count:,} keys through the core's wrap and the store's bulk insert")
        env = dict(os.environ, **{servers.PASSPHRASE_ENV: servers.PASSPHRASE})
        cmd = [
            sys.executable, "-m", "bench.bulk_keys", "--data-dir", str(data), "--store-url", store_url,
            "--appid", app.appid, "--count", str(count), "--out", str(out),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=True, cwd=ROOT, env=env)
        report_line: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        self.log(f"   bulk done: {report_line}")
        return report_line

    PROFILED = (("encrypt", "Encrypt"), ("sign_ec", "Sign"), ("create_key", "CreateKey"))

    def profile(self) -> None:
        """py-spy on the server and core processes at 64 connections, one recording per workload that a goal is
        about: Encrypt (Encrypt and GenerateDataKey), Sign ECDSA P-256 and CreateKey on SQLite with the isolated
        core; CreateKey on PostgreSQL (the PostgreSQL goal's worst workload). The scale goal's profile is taken in
        the scale phase, on the large store."""
        self.results.setdefault("profiles", {})
        data = self.work / "profile"
        proc = servers.kms(
            data, f"sqlite:///{data / 'kms.db'}", "isolated", self.logs, log_level=self.args.log_level, tag="profile"
        )
        proc.start()
        try:
            fx = setup_kms(proc.url)
            for slug, action in self.PROFILED:
                make = kms_bodies(slug, fx, self.seed())
                self.results["profiles"][slug] = self.profile_one(proc, make, slug, action, "sqlite-isolated")
                self.save()
        finally:
            proc.stop()
        if not pg_reachable():
            return
        schema = f"ehsm_bench_{secrets.token_hex(4)}"
        self.results.setdefault("pg_schemas", []).append(schema)
        proc = servers.kms(
            self.work / "profile-pg", f"{PG_DSN}?schema={schema}", "isolated", self.logs,
            log_level=self.args.log_level, tag="profile-pg",
        )  # fmt: skip
        proc.start()
        try:
            fx = setup_kms(proc.url)
            make = kms_bodies("create_key", fx, self.seed())
            self.results["profiles"]["create_key@pg"] = self.profile_one(
                proc, make, "create_key", "CreateKey", "pg-isolated"
            )
            self.save()
        finally:
            proc.stop()

    def profile_one(
        self, proc: servers.Process, make: Callable[[int], bytes], slug: str, action: str, config: str
    ) -> dict[str, Any]:
        rate = next(
            (
                c["rps"]
                for c in self.results["cells"]
                if c["config"] == config and c["workload"] == slug and c["connections"] == 64
            ),
            1000.0,
        )
        count = int(rate * self.args.profile_seconds)
        pool.write_pool(self.pool_path, count, make)
        procs = proc.processes()
        stem = f"{self.stamp}-{slug}-{config}"
        recs = [profiling.start(role, pid, self.args.results_dir, stem) for role, pid in procs.items()]
        time.sleep(1.0)
        t0 = time.monotonic()
        run = wrkrun.run(
            proc.url + kms_path(action), self.pool_path, count, GOAL_CONNECTIONS, check="code",
            headers=JSON_HEADERS, max_seconds=count / max(rate / 8, 1) + 15,
        )  # fmt: skip
        seconds = time.monotonic() - t0
        for rec in recs:
            profiling.stop(rec)
        self.log(f"   profiled {count} {action} requests ({config}): {run.rps} req/s under the profiler")
        return {
            "workload": slug,
            "config": config,
            "connections": GOAL_CONNECTIONS,
            "run": run.as_dict(),
            "processes": {
                rec.role: {
                    "svg": str(rec.svg.relative_to(ROOT)) if rec.svg.is_relative_to(ROOT) else str(rec.svg),
                    "raw": str(rec.raw.relative_to(ROOT)) if rec.raw.is_relative_to(ROOT) else str(rec.raw),
                    "summary": profiling.summarise(rec.raw, seconds),
                }
                for rec in recs
            },
        }

    # ---------------------------------------------------------------- all of it
    def run(self) -> None:
        with self.phase("machine and versions"):
            self.machine_info()
        with self.phase("raw cryptography"):
            self.raw_crypto()
        if not self.args.no_ceiling:
            with self.phase("ceiling"):
                self.ceiling()
        if not self.args.no_peer:
            with self.phase("peer: moto"):
                self.peer()
        for cfg in self.args.configs:
            with self.phase(f"ehsm-kms: {cfg.title}"):
                if cfg.store == "postgres" and not pg_reachable():
                    raise RuntimeError(f"PostgreSQL is not reachable at {PG_DSN}")
                self.configuration(cfg)
        if not self.args.no_scale:
            with self.phase(f"scale: 1,000 and {self.args.scale_keys:,} CMKs"):
                self.scale()
        if self.args.profile:
            with self.phase("profile"):
                self.profile()

    def finish(self) -> None:
        self.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.save()
        with self.phase("report"):
            report.write(self.results, self.args.out, self.args.plot, self.results_path)
            self.log(f"   wrote {self.args.out}, {self.args.plot} and {self.results_path}")
        if self.args.keep:
            self.log(f"   work directory kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def rss(proc: servers.Process) -> dict[str, int]:
    """Peak resident set (VmHWM, KiB) per process of each role of a target (the largest worker's, with workers)."""
    peak: dict[str, int] = {}
    for role, pid in proc.processes().items():
        base = role.split("#", 1)[0]
        peak[base] = max(peak.get(base, 0), machine.status_kib(pid, "VmHWM"))
    return peak


def pg_reachable() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_DSN, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def pg_version() -> str:
    import psycopg

    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "unknown"
    except psycopg.Error:
        return "not reachable"


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Ctrl-C or SIGTERM stops the servers, drops the PostgreSQL schema and writes what was measured (a shell starts
    # background jobs with SIGINT ignored, hence both handlers are set explicitly).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (bash bench/run.sh installs it)", file=sys.stderr)
        return 2
    bench = Bench(args, argv)
    bench.log(f"work directory {bench.work}; results {bench.results_path}")
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.results["failures"].append({"phase": "all", "error": "interrupted"})
    finally:
        bench.finish()
    bench.log("done")
    return 1 if bench.results["failures"] else 0
