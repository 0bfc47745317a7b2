#!/usr/bin/env bash
# A picture of the Grafana dashboard with live data, without Grafana: builds the service and the load generator,
# runs the service on a temporary SQLite database with metrics on (and a local SMTP sink, so customer
# notifications are sent), Prometheus (Debian's package) scraping it every 2 s, a few minutes of mixed load (two
# `loadgen run`s over different scenarios plus `loadgen fanout` watch streams), then renders the dashboard from
# Prometheus's data while the load still runs (preview.py) and screenshots it with headless Chromium.
#
#   docs/grafana/preview.sh [OUT.png]        default: docs/screenshots/dashboard.png
#
# Environment: CUSTOMERS (seeded book, default 20000), PHASE (measured seconds per scenario, default 35),
# KEEP=1 keeps the temporary directory (database, logs, Prometheus data, the HTML page).
# Everything listens on 127.0.0.1 on free ports; every process started here is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${1:-docs/screenshots/dashboard.png}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
CUSTOMERS=${CUSTOMERS:-20000}
PHASE=${PHASE:-35}

say() { printf '\n== %s\n' "$*" >&2; }

install_if_missing() { # COMMAND PACKAGE
  command -v "$1" >/dev/null && return
  say "installing $2"
  if [ "$(id -u)" != 0 ]; then
    echo "$1 is missing: apt-get install $2" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null; }
}
install_if_missing prometheus prometheus
install_if_missing chromium chromium
install_if_missing curl curl

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "${KEEP:-}" = 1 ]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # URL WHAT SECONDS
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return
    sleep 0.2
  done
  echo "$2 did not answer at $1 within $3 s" >&2
  exit 1
}

say "building (release)"
cargo build --release -p customer-context -p loadgen
TARGET=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
SERVER=$TARGET/release/customer-context
LOADGEN=$TARGET/release/loadgen

DB="sqlite://$WORK/cc.db?mode=rwc"
say "seeding $CUSTOMERS customers"
"$LOADGEN" seed --database-url "$DB" --customers "$CUSTOMERS" >"$WORK/seed.log"

GRPC_PORT=$(free_port)
SMTP_PORT=$(free_port)
METRICS_PORT=$(free_port)
PROM_PORT=$(free_port)
ADDR=http://127.0.0.1:$GRPC_PORT
METRICS=http://127.0.0.1:$METRICS_PORT/metrics

say "starting the service ($ADDR, metrics $METRICS)"
python3 docs/grafana/smtp_sink.py "$SMTP_PORT" 2>"$WORK/smtp.log" &
PIDS+=($!)
RUST_LOG=warn "$SERVER" serve --database-url "$DB" --listen "127.0.0.1:$GRPC_PORT" \
  --metrics-listen "127.0.0.1:$METRICS_PORT" --smtp-url "smtp://127.0.0.1:$SMTP_PORT" \
  --smtp-from "Customer Support <support@example.com>" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
wait_for "$METRICS" "the service's metrics" 60
SERVER_PID=${PIDS[-1]}

say "starting Prometheus (http://127.0.0.1:$PROM_PORT)"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: customer-context
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
EOF
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$PROM_PORT/-/ready" Prometheus 60
sleep 6 # a few scrapes before the load, so the charts start at rest

# The closed-loop run sets the length; the open-loop run and the watchers go on a little longer, so the picture
# is taken with all of them running.
say "load: two runs over different scenarios, and watch streams"
STARTED=$(date +%s)
ROUND=$(( (4 * (PHASE + 3) + 30) / 2 )) # seconds per fanout round (two rounds)
"$LOADGEN" run --addr "$ADDR" --baseline false --warmup 3s --duration "${PHASE}s" --concurrency 8 \
  --scenario open-context,get-customer,create-activity,search --server-pid "$SERVER_PID" \
  --metrics-url "$METRICS" >"$WORK/run-closed.txt" 2>"$WORK/run-closed.log" &
CLOSED=$!
PIDS+=("$CLOSED")
"$LOADGEN" run --addr "$ADDR" --baseline false --warmup 3s --duration "$((PHASE + 8))s" --rate 150 \
  --scenario lookup,search,get-customer,open-context \
  >"$WORK/run-open.txt" 2>"$WORK/run-open.log" &
OPEN=$!
PIDS+=("$OPEN")
"$LOADGEN" fanout --addr "$ADDR" --watchers 40,120 --watcher-agents 8 --updates $((ROUND * 4)) --update-rate 4 \
  >"$WORK/fanout.txt" 2>"$WORK/fanout.log" &
FANOUT=$!
PIDS+=("$FANOUT")
failed() {
  tail -n 20 "$WORK"/run-*.log "$WORK"/fanout.log >&2
  echo "the load generator failed" >&2
  exit 1
}
wait "$CLOSED" || failed
MINUTES=$(( ($(date +%s) - STARTED) / 60 + 1 ))

say "rendering the last $MINUTES minutes"
SIZE=$(python3 docs/grafana/preview.py --prometheus "http://127.0.0.1:$PROM_PORT" --minutes "$MINUTES" \
  --rate-interval 30s --out "$WORK/dashboard.html")
mkdir -p "$(dirname "$OUT")"
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --no-first-run --disable-sync --hide-scrollbars --user-data-dir="$WORK/chromium" --window-size="$SIZE" \
  --screenshot="$OUT" "file://$WORK/dashboard.html" 2>"$WORK/chromium.log" ||
  { cat "$WORK/chromium.log" >&2; exit 1; }
echo "wrote $OUT ($(du -k "$OUT" | cut -f1) KiB, ${SIZE/,/x})" >&2

wait "$OPEN" || failed
wait "$FANOUT" || failed
say "the closed-loop run, with the server's figures (--metrics-url)"
cat "$WORK/run-closed.txt"
