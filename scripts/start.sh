#!/usr/bin/env bash
# Set up and start the KMS on the embedded default: single mode, SQLite, a data directory it creates.
# Usage: bash scripts/start.sh [extra `ehsm-kms serve` options]
#   EHSM_KMS_DATA_DIR    data directory (default: ./data)
#   EHSM_KMS_PASSPHRASE  the domain-key passphrase; if unset you are prompted on a terminal, and without a
#                        terminal a random passphrase file is made in the data directory (evaluation only:
#                        a passphrase next to the sealed key protects nothing against a disk thief).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EHSM_KMS_VENV:-.venv}"
DATA="${EHSM_KMS_DATA_DIR:-$PWD/data}"
if [ ! -x "$VENV/bin/ehsm-kms" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -e .
fi
mkdir -p "$DATA" && chmod 700 "$DATA"
secret=()
if [ -n "${EHSM_KMS_PASSPHRASE:-}" ]; then
  secret=(--sealer-secret env:EHSM_KMS_PASSPHRASE)
elif [ ! -t 0 ]; then
  if [ ! -f "$DATA/passphrase" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 > "$DATA/passphrase")
    echo "warning: made $DATA/passphrase for an unattended first start (evaluation only; see SECURITY.md)" >&2
  fi
  secret=(--sealer-secret "file:$DATA/passphrase")
fi
exec "$VENV/bin/ehsm-kms" serve --data-dir "$DATA" "${secret[@]}" "$@"
