#!/usr/bin/env bash
# scripts/bench.sh - a benchmark on both backends (see docs/benchmarks.md).
# Starts a throwaway PostgreSQL cluster unless DATABASE_URL points at one.
# The first argument may name the benchmark (aggregation, the default,
# audit, speed: SPEC §5's ratios against a baseline server, or all: speed
# then aggregation, at their defaults); the rest go to it, e.g.
#     scripts/bench.sh --backends sqlite --large 0.1 --iterations 20
#     scripts/bench.sh audit --events 1000000
#     scripts/bench.sh speed --scale 0.01 --seconds 3 --batches 50
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
bench=aggregation
case "${1:-}" in
    aggregation | audit | speed)
        bench="$1"
        shift
        ;;
    all)
        # Every SPEC §5 figure in one run: the speed ratios, then the
        # aggregation table at 10k and 1M rows (each at its defaults).
        ensure_envoy
        cargo bench --locked --bench speed
        exec cargo bench --locked --bench aggregation
        ;;
esac
if [ "$bench" = speed ]; then
    ensure_envoy
fi
cargo bench --locked --bench "$bench" -- "$@"
