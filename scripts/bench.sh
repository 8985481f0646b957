#!/usr/bin/env bash
# scripts/bench.sh - the aggregation benchmark on both backends (see
# docs/benchmarks.md). Starts a throwaway PostgreSQL cluster unless
# DATABASE_URL points at one. Arguments go to the benchmark, e.g.
#     scripts/bench.sh --backends sqlite --large 0.1 --iterations 20
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/tools.sh
source scripts/tools.sh

own_pg=0
cleanup() {
    if [ "$own_pg" -eq 1 ]; then
        stop_pg_cluster
    fi
}
trap cleanup EXIT

if [[ "${DATABASE_URL:-}" != postgres* ]]; then
    ensure_postgres
    own_pg=1
    start_pg_cluster
fi
export DATABASE_URL
cargo bench --locked --bench aggregation -- "$@"
