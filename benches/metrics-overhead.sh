#!/usr/bin/env bash
# What recording metrics costs: open-context and get-customer throughput of one release build with metrics off
# (no --metrics-listen, no --otlp-endpoint) and on (--metrics-listen, scraped every second as Prometheus would),
# in interleaved runs on fresh copies of one seeded SQLite file.
#
# Usage: benches/metrics-overhead.sh [ROUNDS] [CUSTOMERS]     (defaults: 3 rounds, 100,000 customers)
# Prints one line per run and a summary; docs/benchmarks.md gives the figures of this machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds="${1:-3}"
customers="${2:-100000}"
work="$(mktemp -d)"
server_pid=""
scraper_pid=""
cleanup() {
  [ -n "$scraper_pid" ] && kill "$scraper_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --bins -q
S=target/release/customer-context
L=target/release/loadgen

seeded="$work/seeded.db"
echo "seeding $customers customers..."
"$L" seed --database-url "sqlite://$seeded?mode=rwc" --customers "$customers" >/dev/null

# One measured run: a fresh copy of the seeded file, the server with the given flags, the load generator.
run() {
  local mode="$1" flags=()
  cp "$seeded" "$work/run.db"
  rm -f "$work/run.db-wal" "$work/run.db-shm"
  if [ "$mode" = on ]; then flags=(--metrics-listen 127.0.0.1:20199); fi
  RUST_LOG=warn "$S" serve --database-url "sqlite://$work/run.db?mode=rwc" --listen 127.0.0.1:20198 "${flags[@]}" &
  server_pid=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/20198) 2>/dev/null && break
    sleep 0.1
  done
  if [ "$mode" = on ]; then
    (while sleep 1; do curl -s -o /dev/null http://127.0.0.1:20199/metrics || true; done) &
    scraper_pid=$!
  fi
  "$L" run --addr http://127.0.0.1:20198 --customers "$customers" --concurrency 16 --duration 8s --warmup 2s \
    --scenario open-context,get-customer --json >"$work/$mode.json"
  if [ -n "$scraper_pid" ]; then kill "$scraper_pid"; wait "$scraper_pid" 2>/dev/null || true; scraper_pid=""; fi
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  python3 -c '
import json, sys
mode = sys.argv[2]
for result in json.load(open(sys.argv[1]))["results"]:
    print(mode, result["scenario"], round(result["throughput"]))
' "$work/$mode.json" "$mode" | tee -a "$work/results"
}

for round in $(seq "$rounds"); do
  echo "round $round"
  if [ $((round % 2)) -eq 1 ]; then run off; run on; else run on; run off; fi
done

echo
echo "summary (req/s, mean of $rounds runs each; on/off is the ratio of the means):"
python3 -c '
import sys, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    mode, scenario, rate = line.split()
    runs[(mode, scenario)].append(float(rate))
for scenario in sorted({s for _, s in runs}):
    off, on = (sum(runs[(m, scenario)]) / len(runs[(m, scenario)]) for m in ("off", "on"))
    each = {mode: sorted(int(rate) for rate in runs[(mode, scenario)]) for mode in ("off", "on")}
    print(f"{scenario:<14} off {off:9.0f}  on {on:9.0f}  on/off {on / off:.3f}   (runs: {each})")
' "$work/results"
