#!/usr/bin/env bash
# The benchmark harness, from a fresh clone: installs wrk (Debian) and the harness's Python packages (PyPI) into
# bench/.venv, runs the whole matrix, and writes docs/performance.md, docs/performance.png and
# bench/results/<timestamp>.json.
# Usage: bash bench/run.sh [--quick] [--profile] [more options: bash bench/run.sh --help]
#   EHSM_BENCH_VENV     the virtualenv to use (default bench/.venv; created if missing)
#   EHSM_BENCH_PG_DSN   PostgreSQL for the PostgreSQL configuration (default postgresql://postgres@127.0.0.1:5432/test)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${EHSM_BENCH_VENV:-bench/.venv}"
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing wrk" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is needed: install it (Debian/Ubuntu: apt-get install wrk) and run again" >&2
    exit 1
  fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  python3 -m venv "$VENV"
fi
# Reinstall only when the project's or the harness's requirements changed.
stamp="$VENV/.ehsm-bench-installed"
want="$(cat pyproject.toml bench/requirements.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing ehsm-kms and the harness's packages into $VENV" >&2
  log="$(mktemp)"
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
         "$VENV/bin/python" -m pip install -q -e . -r bench/requirements.txt; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
fi
exec "$VENV/bin/python" -m bench "$@"
