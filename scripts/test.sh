#!/usr/bin/env bash
# scripts/test.sh - orgd's test command. Installs what the tests need, lints,
# then runs the whole test suite once per storage backend (SQLite, PostgreSQL).
#
# Usage: scripts/test.sh [ARGS...]
#   ARGS go to the test binaries, after `--` (e.g. a name filter, --nocapture).
#
# Environment:
#   ORGD_TEST_BACKENDS  backends to run: "sqlite", "postgres" or both
#                       (default "sqlite postgres"; space or comma separated)
#   ORGD_SKIP_LINT=1    skip cargo clippy (cargo fmt --check still runs)
#   ORGD_TEST_THREADS   --test-threads for each run (default 4)
#   DATABASE_URL        a postgres:// URL to test against an existing server;
#                       otherwise a throwaway cluster is started and removed
#
# Exported to the tests: ORGD_TEST_BACKEND, ORGD_TEST_GRPCURL, ORGD_TEST_ENVOY,
# ORGD_TEST_PROMETHEUS, ORGD_TEST_BUF, ORGD_TEST_PYTHON, ORGD_TEST_SCHEMATHESIS,
# and DATABASE_URL for the PostgreSQL run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/tools.sh
source scripts/tools.sh

banner() { printf '\n======== %s ========\n' "$*"; }

stage="setup"
summarized=0
results=() # "<backend> passed|FAILED", one per finished backend run
own_pg=0 # 1 once we started a throwaway cluster (never stop someone else's)
on_exit() {
    local rc=$?
    if [ "$own_pg" -eq 1 ]; then
        stop_pg_cluster
    fi
    if [ "$rc" -ne 0 ] && [ "$summarized" -eq 0 ]; then
        printf '\n======== orgd tests: FAILED during %s (exit %s)%s ========\n' \
            "$stage" "$rc" "${results[*]:+; before that: ${results[*]}}"
    fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Which backends to run.
spec="${ORGD_TEST_BACKENDS:-sqlite postgres}"
read -r -a backends <<<"${spec//,/ }"
for b in "${backends[@]}"; do
    case "$b" in
        sqlite | postgres) ;;
        *)
            echo "ORGD_TEST_BACKENDS: unknown backend '$b' (expected sqlite and/or postgres)" >&2
            exit 2
            ;;
    esac
done
if [ "${#backends[@]}" -eq 0 ]; then
    echo "ORGD_TEST_BACKENDS is empty" >&2
    exit 2
fi
wants() { [[ " ${backends[*]} " == *" $1 "* ]]; }
threads="${ORGD_TEST_THREADS:-4}"

# PostgreSQL is only needed for a throwaway cluster (not for DATABASE_URL).
use_external_pg=0
if [[ "${DATABASE_URL:-}" == postgres* ]]; then
    use_external_pg=1
fi

stage="tool setup"
banner "tools"
if wants postgres && [ "$use_external_pg" -eq 0 ]; then
    ensure_postgres
fi
ensure_grpcurl
ensure_envoy
ensure_prometheus
ensure_buf
ensure_python_client
ensure_schemathesis
export ORGD_TEST_GRPCURL ORGD_TEST_ENVOY ORGD_TEST_PROMETHEUS ORGD_TEST_BUF ORGD_TEST_PYTHON \
    ORGD_TEST_SCHEMATHESIS
echo "ORGD_TEST_GRPCURL=$ORGD_TEST_GRPCURL"
echo "ORGD_TEST_ENVOY=$ORGD_TEST_ENVOY"

stage="buf lint and buf breaking"
banner "$stage (against api-released/)"
"$ORGD_TEST_BUF" lint
"$ORGD_TEST_BUF" breaking proto --against api-released/proto

stage="cargo fmt --check"
banner "$stage"
cargo fmt --check

stage="cargo clippy"
if [ "${ORGD_SKIP_LINT:-}" = 1 ]; then
    banner "cargo clippy: skipped (ORGD_SKIP_LINT=1)"
else
    banner "cargo clippy --all-targets --locked -- -D warnings"
    cargo clippy --all-targets --locked -- -D warnings
fi

stage="test build"
banner "cargo test --locked --no-run"
cargo test --locked --no-run

# Run the suite for one backend; record the outcome instead of stopping, so
# both backends report.
failed=0
passed_total=0
failed_total=0
log="$(mktemp)"
run_backend() {
    local backend="$1" p f
    shift
    stage="$backend tests"
    banner "tests: backend=$backend (--test-threads=$threads)"
    if ORGD_TEST_BACKEND="$backend" cargo test --locked -- --test-threads="$threads" "$@" 2>&1 | tee "$log"; then
        results+=("$backend passed")
    else
        results+=("$backend FAILED")
        failed=1
    fi
    # Add up cargo's "test result: ok. N passed; M failed" lines.
    p=$(grep -oE '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
    f=$(grep -oE '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
    passed_total=$((passed_total + p))
    failed_total=$((failed_total + f))
}

if wants sqlite; then
    run_backend sqlite "$@"
fi

if wants postgres; then
    stage="PostgreSQL setup"
    if [ "$use_external_pg" -eq 1 ]; then
        echo "using the PostgreSQL server given by DATABASE_URL"
    else
        own_pg=1 # set first: on_exit then also cleans up a half-started cluster
        start_pg_cluster
    fi
    export DATABASE_URL
    run_backend postgres "$@"
fi

summarized=1
rm -f "$log"
summary="${results[0]}"
for r in "${results[@]:1}"; do summary+="; $r"; done
banner "orgd tests: $summary"
# The closing line: every test of every backend run.
echo "orgd: $passed_total passed, $failed_total failed"
exit "$failed"
