#!/usr/bin/env bash
# PostgreSQL at 1,000,000 customers, a network hop away: seeds 10,000 and 1,000,000 customers with `loadgen seed`
# (timed), then measures lookup (both sizes, interleaved), search (the book's mix, and the prefixes whose match
# count the planner misjudges most), get-customer and open-context on one replica (16 closed-loop workers, then
# lookup and search open loop at 100/s), and open-context, lookup and search on two replicas of one database. Every server reaches PostgreSQL through `loadgen delay-proxy --delay
# 500us` (1 ms added to every round trip), as a database on another machine would be.
#
# Usage: [KEEP=DIR] benches/pg-million.sh [ROUNDS]     (default: 2 rounds)
# KEEP=DIR keeps the seeded cluster in DIR and reuses it on the next run (seeding a million takes minutes).
# Needs PostgreSQL's initdb and postgres (as the postgres user when run as root). docs/benchmarks.md gives the
# figures of this machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds="${1:-2}"
work="${KEEP:-$(mktemp -d)}"
mkdir -p "$work"
chmod 755 "$work"
# Ports below Linux's ephemeral range (32768-60999): a port in it can be taken by an outgoing connection of
# an earlier run (the proxy's, the server's), and the next listener then fails with "address already in use".
pg_port=25442
proxy_port=25443
first=127.0.0.1:20301
second=127.0.0.1:20302
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_servers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_servers
  [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null || true
  as_pg pg_ctl -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

cargo build --release --bins -q
S=target/release/customer-context
L=target/release/loadgen

if [ ! -d "$work/pg" ]; then
  [ "$(id -u)" = 0 ] && chown postgres: "$work"
  as_pg initdb -A trust -U postgres -E UTF8 -D "$work/pg" >/dev/null
fi
echo "starting PostgreSQL on port $pg_port..."
as_pg pg_ctl -D "$work/pg" -l "$work/pg.log" -w start \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c shared_buffers=4GB -c max_connections=200" >/dev/null
psql() { command psql -h 127.0.0.1 -p "$pg_port" -U postgres -qAt "$@"; }
direct="postgres://postgres@127.0.0.1:$pg_port"
delayed="postgres://postgres@127.0.0.1:$proxy_port"

for size in 10000 1000000; do
  db="c$size"
  if [ "$(psql -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
    psql -c "CREATE DATABASE $db"
    echo "seeding $size customers..."
    "$L" seed --database-url "$direct/$db" --customers "$size" | grep "^seeded" | tee -a "$work/seeding"
  fi
done
[ -f "$work/seeding" ] && cat "$work/seeding"

"$L" delay-proxy --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$pg_port" --delay 500us 2>/dev/null &
proxy_pid=$!

# The prefixes of the million whose estimated match count is furthest from the true one (either way): every
# two-character prefix of a seeded word, and the first digits of phone numbers.
if [ ! -f "$work/misjudged" ]; then
  psql -d c1000000 -c "
    WITH words AS (
      SELECT DISTINCT left(word, 2) AS prefix FROM ts_stat('SELECT search_vector FROM customers TABLESAMPLE SYSTEM (1)')
      WHERE length(word) >= 2
    )
    SELECT prefix FROM words ORDER BY random() LIMIT 200" >"$work/prefixes"
  while read -r prefix; do
    plan="$(psql -d c1000000 -c "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM customers
      WHERE search_vector @@ to_tsquery('simple', '''$prefix'':*')")"
    python3 -c '
import json, sys
plan = json.loads(sys.argv[1])[0]["Plan"]
estimated, actual = plan["Plan Rows"], plan["Actual Rows"]
print(max(estimated, 1) / max(actual, 1), sys.argv[2], estimated, actual)
' "$plan" "$prefix"
  done <"$work/prefixes" | sort -g | tee "$work/judged" | awk 'NR <= 5 { print } END { }' >/dev/null
  { head -5 "$work/judged"; tail -5 "$work/judged"; } | awk '{ print $2 }' | paste -sd, >"$work/misjudged"
  echo "misjudged prefixes (estimate / actual, prefix, estimated rows, actual rows):"
  head -5 "$work/judged"; echo ...; tail -5 "$work/judged"
fi
misjudged="$(cat "$work/misjudged")"

start() {
  local db="$1" listen
  shift
  for listen in "$@"; do
    RUST_LOG=warn "$S" serve --database-url "$delayed/$db" --listen "$listen" --db-max-connections 40 &
    pids+=($!)
    for _ in $(seq 300); do
      (exec 3<>"/dev/tcp/${listen%:*}/${listen#*:}") 2>/dev/null && break
      sleep 0.1
    done
  done
}

# One measured run: `label`, customers, targets, then loadgen's own flags.
measure() {
  local label="$1" customers="$2" targets="$3" load=(--concurrency 16)
  shift 3
  if [[ " $* " == *" --rate "* ]]; then load=(); fi
  "$L" run --target "$targets" --customers "$customers" "${load[@]}" --duration 10s --warmup 2s --json "$@" \
    >"$work/out.json"
  python3 -c '
import json, sys
out = json.load(open(sys.argv[1]))
health = next((r["throughput"] for r in out["results"] if r["scenario"] == "health"), None)
for r in out["results"]:
    if r["scenario"] == "health":
        continue
    l = r["latency"]
    print(sys.argv[2], r["scenario"], round(r["throughput"]), l["p50_ms"], l["p99_ms"], l["p999_ms"],
          sum(r["errors"].values()), round(health) if health else "-")
' "$work/out.json" "$label" | tee -a "$work/results"
}

: >"$work/results"
echo "label scenario req/s p50_ms p99_ms p99.9_ms errors health_req/s"
for round in $(seq "$rounds"); do
  sizes=(10000 1000000)
  if [ $((round % 2)) -eq 0 ]; then sizes=(1000000 10000); fi
  for size in "${sizes[@]}"; do
    start "c$size" "$first"
    measure "1-replica/$size" "$size" "http://$first" --scenario lookup,get-customer,search,open-context
    measure "1-replica/$size/100-per-s" "$size" "http://$first" --baseline false --rate 100 --scenario lookup,search
    if [ "$size" = 1000000 ]; then
      measure "1-replica/$size/misjudged" "$size" "http://$first" --baseline false --scenario search \
        --search-query "$misjudged"
      measure "1-replica/$size/misjudged/100-per-s" "$size" "http://$first" --baseline false --rate 100 \
        --scenario search --search-query "$misjudged"
    fi
    stop_servers
  done
  start c1000000 "$first" "$second"
  measure "2-replicas/1000000" 1000000 "http://$first,http://$second" --scenario lookup,search,open-context
  stop_servers
done
