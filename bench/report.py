"""docs/performance.md and docs/performance.png from one harness run (the JSON in bench/results/).

``python -m bench.report bench/results/<stamp>.json`` rewrites both from a saved run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOAL_C = 64
OURS = ("sqlite-isolated", "sqlite-inprocess", "pg-isolated", "sqlite-isolated-w2")
PLOTTED = ("encrypt", "gdk", "sign_ec")


# ---------------------------------------------------------------- lookups
def cell(res: dict[str, Any], config: str, workload: str, connections: int = GOAL_C) -> dict[str, Any] | None:
    for c in res.get("cells", []):
        if c["config"] == config and c["workload"] == workload and c["connections"] == connections:
            return c  # type: ignore[no-any-return]
    return None


def ceiling_cell(res: dict[str, Any], connections: int) -> dict[str, Any] | None:
    return cell(res, "ceiling", "encrypt", connections)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_n(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def fmt_ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def fmt_cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return "–"
    mark = "" if c["valid"] else " (invalid)"
    return f"{c['rps']:,.0f} · {c['p50_ms']:.1f} / {c['p99_ms']:.1f}{mark}"


def mb(kib: int | None) -> str:
    return "–" if not kib else f"{kib / 1024:.0f} MB"


# ---------------------------------------------------------------- goals (DESIGN.md section 6)
@dataclass
class Goal:
    workload: str
    goal: str
    measured: str
    ratio: str
    status: str


def _status(ok: bool | None, cells: Iterable[dict[str, Any] | None]) -> str:
    cells = list(cells)
    if ok is None or any(c is None for c in cells):
        return "not measured"
    if any(not c["valid"] for c in cells if c is not None):
        return "missed (invalid run)"
    return "met" if ok else "missed"


def goals(res: dict[str, Any]) -> list[Goal]:
    out: list[Goal] = []
    ceiling = ceiling_cell(res, GOAL_C)
    rows = [
        ("sqlite-isolated", "encrypt", "Encrypt AES-256-GCM 1 KiB, SQLite, isolated core"),
        ("sqlite-isolated", "gdk", "GenerateDataKey"),
    ]
    if any(c["config"] == "sqlite-isolated-w2" for c in res.get("cells", [])):
        rows += [
            ("sqlite-isolated-w2", "encrypt", "Encrypt, the same with `--workers 2`"),
            ("sqlite-isolated-w2", "gdk", "GenerateDataKey, the same with `--workers 2`"),
        ]
    for key, slug, title in rows:
        c = cell(res, key, slug)
        of_ceiling = _ratio(c["rps"] if c else None, ceiling["rps"] if ceiling else None)
        ok = None
        if c is not None and of_ceiling is not None:
            ok = c["rps"] >= 10_000 and c["p99_ms"] <= 25 and of_ceiling >= 0.4
        measured = (
            f"{c['rps']:,.0f} req/s, p99 {c['p99_ms']:.1f} ms, {fmt_ratio(of_ceiling)} of the ceiling "
            f"({fmt_n(ceiling['rps'] if ceiling else None)} req/s)"
            if c
            else "–"
        )
        ratio = f"{c['rps'] / 10_000:.2f} of 10k; p99 {25 / c['p99_ms']:.2f}x headroom" if c and c["p99_ms"] else "–"
        out.append(
            Goal(title, ">= 10,000 req/s, p99 <= 25 ms, >= 0.4 of the ceiling", measured, ratio,
                 _status(ok, [c, ceiling]))
        )  # fmt: skip
    for slug, title, floor in (("sign_ec", "Sign ECDSA P-256", 8000), ("create_key", "CreateKey AES-256", 3000)):
        c = cell(res, "sqlite-isolated", slug)
        out.append(
            Goal(
                title,
                f">= {floor:,} req/s",
                f"{c['rps']:,.0f} req/s, p99 {c['p99_ms']:.1f} ms" if c else "–",
                fmt_ratio(c["rps"] / floor) if c else "–",
                _status(c["rps"] >= floor if c else None, [c]),
            )
        )
    c = cell(res, "sqlite-isolated", "sign_rsa")
    raw = res.get("raw_crypto", {}).get("rsa3072_sign_pkcs1_sha256")
    r = _ratio(c["rps"] if c else None, raw)
    out.append(
        Goal(
            "Sign RSA-3072",
            ">= 0.7 of raw cryptography RSA-3072 signing, same number of processes (1: the core)",
            f"{c['rps']:,.0f} req/s vs raw {fmt_n(raw)} signatures/s" if c else "–",
            fmt_ratio(r),
            _status(r >= 0.7 if r is not None else None, [c]),
        )
    )
    out.append(_pair_goal(res, "PostgreSQL store instead of SQLite", "pg-isolated", "sqlite-isolated", 0.6))
    out.append(_scale_goal(res))
    out.append(_pair_goal(res, "isolated core vs in-process core", "sqlite-isolated", "sqlite-inprocess", 0.8))
    return out


def _pair_goal(res: dict[str, Any], title: str, num: str, den: str, floor: float) -> Goal:
    pairs = []
    cells: list[dict[str, Any] | None] = []
    for slug in res.get("options", {}).get("workloads", []):
        a, b = cell(res, num, slug), cell(res, den, slug)
        r = _ratio(a["rps"] if a else None, b["rps"] if b else None)
        if r is not None:
            pairs.append((r, slug))
            cells += [a, b]
    if not pairs:
        return Goal(title, f">= {floor} of the {den} figure", "–", "–", "not measured")
    worst, worst_slug = min(pairs)
    listing = ", ".join(f"{s} {r:.2f}" for r, s in pairs)
    return Goal(
        title,
        f">= {floor} of the {res['configs'].get(den, den)} figure, every workload",
        f"worst {worst_slug}: {worst:.2f} ({listing})",
        fmt_ratio(worst),
        _status(worst >= floor, cells),
    )


def _scale_goal(res: dict[str, Any]) -> Goal:
    scale = res.get("scale") or {}
    stores = scale.get("stores", [])
    title = "1,000,000 CMKs in the store"
    target = "Encrypt within 10% of the 1,000-key figure; RSS <= 200 MB per worker"
    if len(stores) < 2:
        return Goal(title, target, "–", "–", "not measured")
    small, big = stores[0], stores[-1]
    r = _ratio(big["cell"]["rps"], small["cell"]["rps"])
    peak = max(big["rss"].values()) if big["rss"] else 0
    ok = r is not None and r >= 0.9 and peak <= 200 * 1024
    rss_text = ", ".join(f"{role} {mb(kib)}" for role, kib in big["rss"].items())
    measured = (
        f"{big['keys']:,} keys: {big['cell']['rps']:,.0f} req/s vs {small['cell']['rps']:,.0f} with "
        f"{small['keys']:,}; peak RSS {rss_text}"
    )
    if big["keys"] < 1_000_000:
        measured += f" (this run filled {big['keys']:,} keys, not 1,000,000)"
    status = _status(ok, [small["cell"], big["cell"]])
    if big["keys"] < 1_000_000 and status == "met":
        status = "met at the size measured"
    return Goal(title, target, measured, fmt_ratio(r), status)


# ---------------------------------------------------------------- markdown
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _machine(res: dict[str, Any]) -> list[str]:
    m = res.get("machine", {})
    v = m.get("versions", {})
    load = m.get("load_average_at_start", [])
    lines = [
        f"- Machine: {m.get('cpu_model', '?')}, {m.get('cores', '?')} cores "
        f"({m.get('cores_usable', '?')} usable), {m.get('memory_gib', '?')} GiB memory, Linux {m.get('kernel', '?')}; "
        f"load average at start {', '.join(str(x) for x in load)}.",
        f"- Versions: Python {v.get('python')}, uvicorn {v.get('uvicorn')} (HTTP: {v.get('uvicorn_http')}, "
        f"event loop: {v.get('uvicorn_loop')}), orjson {v.get('orjson')}, msgspec {v.get('msgspec')}, "
        f"cryptography {v.get('cryptography')}, SQLite {v.get('sqlite')}, PostgreSQL {v.get('postgresql')} "
        f"(psycopg {v.get('psycopg')}), {v.get('wrk')}, moto {v.get('moto')} (Werkzeug {v.get('werkzeug')}).",
        f"- Code: {m.get('git', '?')}"
        + ("." if m.get("code_is_checkout", True) else f"; ehsm_kms imported from `{m.get('code_path')}`."),
    ]
    shares = sorted(r["other_cpu_share"] for c in res.get("cells", []) for r in c["runs"] if "other_cpu_share" in r)
    median = shares[len(shares) // 2] if shares else 0.0
    if shares:
        lines.append(
            f"- Processes outside the benchmark used {median:.0%} of the machine's CPU during the median measured "
            f"run (90th percentile {shares[int(len(shares) * 0.9)]:.0%}, max {shares[-1]:.0%}); a quiet machine "
            "shows about 0%."
        )
    if (load and load[0] > 0.5) or median > 0.05:
        lines.append(
            f"- **The machine was not quiet** (1-minute load at start {load[0] if load else '?'}, other processes "
            f"{median:.0%} of the CPU): absolute figures are low and noisy; ratios measured in the same run hold "
            "better. Rerun on a quiet machine before reading the goals."
        )
    return lines


def _method(res: dict[str, Any]) -> list[str]:
    o = res["options"]
    return [
        "## Method",
        "",
        f"- Load generator: wrk ({o['wrk_threads']} thread) on the same machine, through `bench/replay.lua`. "
        "Every request is unique and signed as a client signs it (own nonce, current timestamp, HMAC-SHA256 with "
        "the app's APIKey), pre-signed into a file just before its run and replayed exactly once: the server "
        "checks the timestamp window, the signature (in the core) and the replay record (in the store) for each. "
        "A run ends when the last request is answered; its throughput is answers over the time from the first "
        "request written to the last answer read; latencies are wrk's.",
        '- A run is invalid when any answer lacks `"code":200` (or, for the peer, HTTP 200), or any request '
        "went unanswered; invalid cells are marked and fail their goal.",
        f"- Each cell: a warm-up run (~{o['warmup_seconds']} s), then {o['runs']} measured run(s) of "
        f"~{o['seconds']} s each (pool sized from the rate measured so far); figures are medians over the "
        "measured runs: req/s, p50 and p99 in ms.",
        "- Our server: `ehsm-kms serve` as shipped (one uvicorn process; with the isolated core, one core process "
        f"beside it), passphrase sealer, log level `{o['log_level']}` (one log line per request). Each configuration "
        "gets a fresh data directory (PostgreSQL: a fresh schema `ehsm_bench_<hex>` in database `test`, dropped "
        "afterwards). Replay records accumulate over a configuration's runs, as in service.",
        "- Ceiling: `bench/ceiling.py`, a trivial endpoint (read body, orjson parse, orjson answer) on the same "
        "uvicorn with the same settings, one process, sent the same pre-signed Encrypt bodies.",
        "- Peer: moto's KMS (`moto_server`, one process, threaded Werkzeug), AWS JSON protocol (`POST /`, "
        "`X-Amz-Target: TrentService.*`), unique bodies replayed the same way. moto checks no signature and keeps "
        "no replay record, so it does less work per request than we do.",
        "- Scale: see its section. Peak RSS is `VmHWM` from `/proc/<pid>/status` of the server process and of "
        "the core process.",
    ]


def _workload_tables(res: dict[str, Any]) -> list[str]:
    o = res["options"]
    titles = res.get("workload_titles", {})
    present = [k for k in OURS if k in o["configs"]]
    lines = [
        "## Matrix",
        "",
        "Each cell: req/s · p50 / p99 latency in ms (median of the measured runs). The ratio columns divide the "
        "SQLite isolated-core figure by the ceiling's and by moto's at the same connection count.",
    ]
    for slug in o["workloads"]:
        lines += ["", f"### {titles.get(slug, slug)}", ""]
        header = ["connections"] + [res["configs"][k] for k in present] + ["ceiling", "moto", "÷ ceiling", "÷ moto"]
        rows = []
        for c in o["concurrency"]:
            ours = [cell(res, k, slug, c) for k in present]
            ceil_c = ceiling_cell(res, c)
            peer = cell(res, "moto", slug, c)
            base = cell(res, "sqlite-isolated", slug, c)
            rows.append(
                [str(c)]
                + [fmt_cell(x) for x in ours]
                + [fmt_cell(ceil_c), fmt_cell(peer)]
                + [
                    fmt_ratio(_ratio(base["rps"] if base else None, ceil_c["rps"] if ceil_c else None)),
                    fmt_ratio(_ratio(base["rps"] if base else None, peer["rps"] if peer else None)),
                ]
            )
        lines += _table(header, rows)
    return lines


def _cpu_table(res: dict[str, Any]) -> list[str]:
    o = res["options"]
    rows = []
    for slug in o["workloads"]:
        for key in OURS:
            c = cell(res, key, slug)
            if c is None:
                continue
            cpu = c.get("cpu_us_per_request", {})
            rows.append(
                [
                    res["workload_titles"].get(slug, slug),
                    res["configs"][key],
                    fmt_n(c["rps"]),
                    fmt_n(cpu.get("server")),
                    fmt_n(cpu.get("core")),
                    fmt_n(c.get("wrk_cpu_us_per_request")),
                ]
            )
    ceil_c = ceiling_cell(res, GOAL_C)
    if ceil_c:
        rows.append(
            ["ceiling", "-", fmt_n(ceil_c["rps"]), fmt_n(ceil_c["cpu_us_per_request"].get("server")), "–",
             fmt_n(ceil_c.get("wrk_cpu_us_per_request"))]
        )  # fmt: skip
    if not rows:
        return []
    return [
        "",
        f"## CPU per request at {GOAL_C} connections",
        "",
        "CPU time (user + system, from `/proc/<pid>/stat`) each process spent per answered request, median of the "
        "measured runs. On 2 cores, server + core + wrk CPU per request bounds the rate at about "
        "2,000,000 / (their sum) req/s.",
        "",
        *_table(["workload", "configuration", "req/s", "server µs", "core µs", "wrk µs"], rows),
    ]


def _scale(res: dict[str, Any]) -> list[str]:
    scale = res.get("scale") or {}
    stores = scale.get("stores", [])
    if not stores:
        return []
    base = stores[0]["cell"]["rps"]
    rows = []
    for s in stores:
        f = s["fill"]
        rows.append(
            [
                f"{s['keys']:,}",
                f"{f.get('keys_made', 0):,} in {f.get('seconds', 0)} s (wrap {f.get('wrap_seconds')} s, "
                f"insert {f.get('insert_seconds')} s)",
                fmt_cell(s["cell"]),
                fmt_ratio(_ratio(s["cell"]["rps"], base)),
                mb(s["rss"].get("server")),
                mb(s["rss"].get("core")),
            ]
        )
    return [
        "",
        "## Scale: Encrypt on random keys of a large store",
        "",
        f"SQLite, isolated core, {scale.get('connections', GOAL_C)} connections; every request names a key drawn "
        "at random from the whole store, so the node's 1-second key cache and the core's blob cache rarely help "
        "in the large store. The store is filled in bulk by `bench/bulk_keys.py` with the server stopped: it opens "
        "the same sealed domain key, draws each key's material and wraps it with the core's own "
        "`Enclave.wrap_cmk` (so every row's blob is bound to its own keyid and appid, as a served CreateKey's is), "
        "and inserts through the store's `bulk_create_keys` in batches of 10,000 (the loader's SQLite connections get "
        "a larger page cache; the server reopens the file with its own settings). The first store is grown into "
        "the second; the server is restarted before each measurement, so peak RSS is that of the measurement.",
        "",
        *_table(
            ["keys in store", "bulk fill", "Encrypt: req/s · p50 / p99 ms", "÷ 1,000-key", "server RSS", "core RSS"],
            rows,
        ),
    ]


def _rss(res: dict[str, Any]) -> list[str]:
    rows = []
    for key, procs in res.get("rss", {}).items():
        rows.append([res["configs"].get(key, key), mb(procs.get("server")), mb(procs.get("core"))])
    if not rows:
        return []
    return ["", "## Peak RSS per process (whole configuration run)", "", *_table(["target", "server", "core"], rows)]


def _raw(res: dict[str, Any]) -> list[str]:
    raw = res.get("raw_crypto")
    if not raw:
        return []
    names = {
        "rsa3072_sign_pkcs1_sha256": "RSA-3072 sign (PKCS#1 v1.5, SHA-256)",
        "ecdsa_p256_sign_sha256": "ECDSA P-256 sign (SHA-256)",
        "ecdsa_p256_verify_sha256": "ECDSA P-256 verify (SHA-256)",
        "aes256gcm_encrypt_1kib": "AES-256-GCM encrypt 1 KiB",
    }
    rows = [[names.get(k, k), fmt_n(v)] for k, v in raw.items()]
    return [
        "",
        "## Raw cryptography, one process (`bench/raw_crypto.py`)",
        "",
        *_table(["operation", "per second"], rows),
    ]


def _share_table(rows: list[Any], limit: int, head: str = "function") -> list[str]:
    return _table([head, "share"], [[f"`{f}`", f"{share:.0%}"] for f, _, share in rows[:limit]])


def _profile(res: dict[str, Any]) -> list[str]:
    profiles = res.get("profiles") or ({"encrypt": res["profile"]} if res.get("profile") else {})
    lines: list[str] = []
    for prof in profiles.values():
        lines += _profile_one(res, prof)
    return lines


def _profile_one(res: dict[str, Any], prof: dict[str, Any]) -> list[str]:
    run = prof["run"]
    slug = prof["workload"]
    if slug.startswith("encrypt_random_"):
        title = f"Encrypt on random keys of a {int(slug.rsplit('_', 1)[1]):,}-key store"
    else:
        title = res.get("workload_titles", {}).get(slug, slug)
    config = prof.get("config", "sqlite-isolated")
    where = res.get("configs", {}).get(config, config)
    if config != "sqlite-isolated":
        title = f"{title} ({where})"
    lines = [
        "",
        f"## Profile: where a request's time goes, {title}",
        "",
        f"py-spy (`--nonblocking`, 100 Hz) on the server and core processes while wrk replayed "
        f"{run['requests']:,} requests at {prof['connections']} connections ({where}; "
        f"{run['rps']:,.0f} req/s under the profiler). Flame graphs: "
        + ", ".join(f"`{p['svg']}`" for p in prof["processes"].values())
        + " (bench/results/ is not committed; rerun with `--profile`). Shares are of a thread's samples; stacks are "
        "cut below the event loop (server) and the serve loop (core), so the shares are of work, not of plumbing.",
    ]
    for role, p in prof["processes"].items():
        s = p["summary"]
        if "error" in s:
            lines += ["", f"{role}: {s['error']}"]
            continue
        busy = ", ".join(
            f"{t} {d['busy']:.0%}" + (f" (of which waiting for input {d['waiting']:.0%})" if d.get("waiting") else "")
            for t, d in s["threads"].items()
        )
        lines += [
            "",
            f"### {title}: {role} process",
            "",
            f"Share of the run in which each thread was sampled active: {busy}.",
        ]
        main = s["threads"].get("MainThread")
        if main:
            lines += ["", "Main thread, inclusive:", "", *_share_table(main["inclusive"], 20)]
            lines += ["", "Main thread, self:", "", *_share_table(main["self"], 15)]
        for frame, split in s.get("splits", {}).items():
            lines += ["", f"`{frame}`, by the function it calls:", "", *_share_table(split["callees"], 10, "callee")]
    return lines


def markdown(res: dict[str, Any], results_path: Path | None) -> str:
    o = res["options"]
    lines = [
        "# Performance",
        "",
        "Written by the benchmark harness (`bench/`); do not edit by hand. Rerun with `bash bench/run.sh` "
        "(full matrix, under 30 minutes on 2 cores) or `bash bench/run.sh --quick` (1 run per cell, fewer "
        "connection counts, a smaller scale store).",
        "",
        f"- Command: `{res['command']}`{' (quick mode: not the full matrix)' if o['quick'] else ''}.",
        f"- Run: {res['stamp']}, {res.get('elapsed_s', 0) / 60:.1f} minutes"
        + (f"; raw runs in `{_rel(results_path)}`." if results_path else "."),
        *_machine(res),
        "",
        "![throughput and p99 against connections](performance.png)",
        "",
        f"## Goals (DESIGN.md section 6, at {GOAL_C} connections)",
        "",
        *_table(
            ["workload", "goal", "measured", "ratio", "status"],
            [[g.workload, g.goal, g.measured, g.ratio, f"**{g.status}**"] for g in goals(res)],
        ),
        "",
        *_method(res),
        "",
        *_workload_tables(res),
        *_cpu_table(res),
        *_scale(res),
        *_rss(res),
        *_raw(res),
        *_profile(res),
    ]
    invalid = [c for c in res.get("cells", []) if not c["valid"]]
    if invalid:
        lines += ["", "## Invalid cells", ""]
        for c in invalid:
            notes = "; ".join(r["note"] for r in c["runs"] if r["note"])
            lines.append(f"- {c['config']} {c['workload']} c={c['connections']}: {notes[:400]}")
    if res.get("failures"):
        lines += ["", "## Phases that failed", ""]
        lines += [f"- {f['phase']}: {f['error'].splitlines()[0][:400]}" for f in res["failures"]]
    return "\n".join(lines) + "\n"


def _rel(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- the plot
def plot(res: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = res["options"]
    slugs = [s for s in PLOTTED if s in o["workloads"]] or o["workloads"][:1]
    fig, axes = plt.subplots(2, len(slugs), figsize=(5.2 * len(slugs), 8.2), squeeze=False)
    series = [(k, res["configs"][k], "-o") for k in OURS if k in o["configs"]]
    series += [("ceiling", "ceiling (trivial endpoint)", "--s"), ("moto", "moto (peer)", ":^")]
    for col, slug in enumerate(slugs):
        top, bottom = axes[0][col], axes[1][col]
        for key, label, style in series:
            wl = "encrypt" if key == "ceiling" else slug
            points = [(c, cell(res, key, wl, c)) for c in o["concurrency"]]
            xs = [c for c, x in points if x and x["rps"] > 0]
            if not xs:
                continue
            top.plot(xs, [x["rps"] for _, x in points if x and x["rps"] > 0], style, label=label)
            bottom.plot(xs, [x["p99_ms"] for _, x in points if x and x["rps"] > 0], style, label=label)
        top.set_title(res["workload_titles"].get(slug, slug))
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks(o["concurrency"], [str(c) for c in o["concurrency"]])
            ax.grid(True, alpha=0.3)
            ax.set_xlabel("connections")
        top.set_ylabel("requests / s")
        bottom.set_ylabel("p99 latency (ms)")
        bottom.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"ehsm-kms benchmark {res['stamp']}{' (quick mode)' if o['quick'] else ''}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write(res: dict[str, Any], md_path: Path, png_path: Path, results_path: Path | None) -> None:
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown(res, results_path))
    plot(res, png_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "performance.png")
    args = parser.parse_args()
    write(json.loads(args.results.read_text()), args.out, args.plot, args.results)


if __name__ == "__main__":
    main()
