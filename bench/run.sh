#!/usr/bin/env bash
# Run the benchmark: `bench/run.sh [--quick] [--profile] [...]` (arguments go to `python -m bench`).
# Needs wrk and taskset (apt-get install -y wrk util-linux), 2+ CPUs, and a PostgreSQL on
# 127.0.0.1:5432 where user postgres may create databases (BENCH_PG_ADMIN_URL to change).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq wrk
    else
        echo "bench: wrk is missing (apt-get install -y wrk)" >&2
        exit 2
    fi
fi
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" -m bench "$@"
