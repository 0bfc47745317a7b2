#!/usr/bin/env bash
# Concurrent writes on PostgreSQL a network hop away: create-activity (random seeded customers, so writers touch
# different customers) with 1 and 16 closed-loop writers, through a delay proxy adding 1 ms to every round trip
# (`loadgen delay-proxy --delay 500us`), and with 1 writer straight to the database and through a second proxy
# adding 3 ms (`--delay 1500us`). The round trips one write makes are estimated twice from the single-writer
# medians: (1 ms p50 - direct p50) / one round trip through the proxy, and the slope (3 ms p50 - 1 ms p50) /
# (3 ms round trip - 1 ms round trip). The slope leaves out what any delay costs besides the wait itself (a
# process woken from sleep at every step instead of finding the reply there).
#
# With OLD=DIR (a directory holding an earlier release build's `customer-context` and `loadgen`), every
# measurement is repeated with that build, interleaved with this one, on copies of one seeded database: the old
# loadgen seeds it (its schema), and each server migrates its own copy as an upgrade would.
#
# Usage: [OLD=DIR] benches/pg-writers.sh [ROUNDS] [CUSTOMERS]     (defaults: 3 rounds, 10,000 customers)
# Needs PostgreSQL's initdb and postgres (as the postgres user when run as root). docs/benchmarks.md gives the
# figures of this machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds="${1:-3}"
customers="${2:-10000}"
work="$(mktemp -d)"
chmod 755 "$work"
# Ports below Linux's ephemeral range (32768-60999): a port in it can be taken by an outgoing connection of
# an earlier run (the proxy's, the server's), and the next listener then fails with "address already in use".
pg_port=25432
proxy_port=25433
far_port=25435
listen=127.0.0.1:20298
server_pid=""
proxy_pid=""
far_pid=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  [ -n "$far_pid" ] && kill "$far_pid" 2>/dev/null || true
  as_pg pg_ctl -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --bins -q
NEW=target/release
builds=(new)
if [ -n "${OLD:-}" ]; then builds=(new old); fi
bin() { if [ "$1" = old ]; then echo "$OLD/$2"; else echo "$NEW/$2"; fi; }

echo "starting PostgreSQL on port $pg_port..."
[ "$(id -u)" = 0 ] && chown postgres: "$work"
as_pg initdb -A trust -U postgres -E UTF8 -D "$work/pg" >/dev/null
# A new cluster has no write-ahead-log segments to recycle: by default each one it starts is 16 MB of zeros
# written and flushed while every commit waits (stalls of 100-150 ms every few seconds under 16 writers). A
# database in service reuses old segments, so new ones are created without the zeros here (`wal_init_zero = off`).
as_pg pg_ctl -D "$work/pg" -l "$work/pg.log" -w start \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c max_connections=200 -c wal_init_zero=off" >/dev/null
psql() { command psql -h 127.0.0.1 -p "$pg_port" -U postgres -qAt "$@"; }
direct="postgres://postgres@127.0.0.1:$pg_port"
delayed="postgres://postgres@127.0.0.1:$proxy_port"
far="postgres://postgres@127.0.0.1:$far_port"

seeder="$(bin "${builds[-1]}" loadgen)"
echo "seeding $customers customers with $seeder..."
psql -c "CREATE DATABASE seeded"
"$seeder" seed --database-url "$direct/seeded" --customers "$customers" >/dev/null

"$NEW/loadgen" delay-proxy --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$pg_port" --delay 500us \
  2>/dev/null &
proxy_pid=$!
"$NEW/loadgen" delay-proxy --listen "127.0.0.1:$far_port" --upstream "127.0.0.1:$pg_port" --delay 1500us \
  2>/dev/null &
far_pid=$!

# One measured run: a fresh copy of the seeded database, the build's server reaching it by `path`, the load.
# With a fourth argument `warm-up`, the run is printed but not counted.
run() {
  local build="$1" path="$2" writers="$3" counted="$work/results" url
  [ "${4:-}" = warm-up ] && counted=/dev/null
  case "$path" in delayed) url="$delayed" ;; far) url="$far" ;; *) url="$direct" ;; esac
  psql -c "DROP DATABASE IF EXISTS run" -c "CREATE DATABASE run TEMPLATE seeded"
  RUST_LOG=warn "$(bin "$build" customer-context)" serve --database-url "$url/run" --listen "$listen" \
    --db-max-connections 40 &
  server_pid=$!
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/${listen%:*}/${listen#*:}") 2>/dev/null && break
    sleep 0.1
  done
  "$NEW/loadgen" run --addr "http://$listen" --customers "$customers" --concurrency "$writers" \
    --duration 10s --warmup 2s --scenario create-activity --json >"$work/out.json"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  python3 -c '
import json, sys
build, path, writers = sys.argv[2:5]
for r in json.load(open(sys.argv[1]))["results"]:
    if r["scenario"] == "create-activity":
        print(build, path, writers, round(r["throughput"]), r["latency"]["p50_ms"], r["latency"]["p99_ms"],
              sum(r["errors"].values()))
' "$work/out.json" "$build" "$path" "$writers" | tee -a "$counted"
}

# What one round trip through a proxy costs (its thread wakes a little late): an echo server behind a proxy of
# each delay, pinged 1,000 times.
for delay in 500us 1500us; do
python3 - "$NEW/loadgen" "$delay" >>"$work/round_trip" <<'PY'
import socket, subprocess, sys, threading, time
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
def echo():
    conn, _ = server.accept(); conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(64):
        conn.sendall(data)
threading.Thread(target=echo, daemon=True).start()
proxy = subprocess.Popen([sys.argv[1], "delay-proxy", "--listen", "127.0.0.1:25434", "--upstream",
                          f"127.0.0.1:{server.getsockname()[1]}", "--delay", sys.argv[2]], stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        client = socket.create_connection(("127.0.0.1", 25434)); break
    except OSError:
        time.sleep(0.05)
client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
for _ in range(1000):
    started = time.perf_counter(); client.sendall(b"x"); client.recv(8); times.append(time.perf_counter() - started)
proxy.terminate()
print(sorted(times)[500] * 1000)
PY
done
echo "one round trip through the proxies: $(head -1 "$work/round_trip" | cut -c1-5) ms (1 ms added)," \
  "$(tail -1 "$work/round_trip" | cut -c1-5) ms (3 ms added)"

# The first runs on a new cluster are slower, whatever the build (the build that went first once wrote 295/s with
# one writer and 2,401/s with 16 in its first round, against 312-319/s and 2,769-2,795/s in its next two: caches
# and write-ahead-log segments filled for the first time). One run of 16 writers first, not counted, so that the
# build that goes first is not measured on a cold cluster.
echo "warming the cluster up (not counted):"
run "${builds[0]}" delayed 16 warm-up
echo "build path writers req/s p50_ms p99_ms errors"
for round in $(seq "$rounds"); do
  order=("${builds[@]}")
  if [ $((round % 2)) -eq 0 ]; then order=($(printf '%s\n' "${builds[@]}" | tac)); fi
  for build in "${order[@]}"; do
    run "$build" delayed 1
    run "$build" delayed 16
    run "$build" direct 1
    run "$build" far 1
  done
done

echo
echo "summary (mean of $rounds runs; round trips of one write, from the single-writer p50s: 1 ms minus direct over"
echo "one round trip through the 1 ms proxy, and 3 ms minus 1 ms over the difference of the proxies' round trips):"
python3 -c '
import sys, collections
runs = collections.defaultdict(list)
near, far = (float(line) for line in open(sys.argv[2]))
for line in open(sys.argv[1]):
    build, path, writers, rate, p50, p99, errors = line.split()
    runs[(build, path, int(writers))].append((float(rate), float(p50), float(p99)))
mean = lambda values: sum(values) / len(values)
for build in ("new", "old"):
    if (build, "delayed", 1) not in runs:
        continue
    one = mean([r for r, _, _ in runs[(build, "delayed", 1)]])
    many = mean([r for r, _, _ in runs[(build, "delayed", 16)]])
    p99 = mean([p for _, _, p in runs[(build, "delayed", 16)]])
    delayed = mean([p for _, p, _ in runs[(build, "delayed", 1)]])
    direct = mean([p for _, p, _ in runs[(build, "direct", 1)]])
    farther = mean([p for _, p, _ in runs[(build, "far", 1)]])
    print(f"{build}: 1 writer {one:7.0f}/s  16 writers {many:7.0f}/s (p99 {p99:.1f} ms)  16/1 {many / one:5.1f}x  "
          f"p50 {direct:.2f} / {delayed:.2f} / {farther:.2f} ms direct / 1 ms / 3 ms: "
          f"{(delayed - direct) / near:.1f} · {(farther - delayed) / (far - near):.1f} round trips")
if ("old", "delayed", 16) in runs:
    new = mean([r for r, _, _ in runs[("new", "delayed", 16)]])
    old = mean([r for r, _, _ in runs[("old", "delayed", 16)]])
    print(f"16 writers, new / old: {new / old:.1f}x")
' "$work/results" "$work/round_trip"
