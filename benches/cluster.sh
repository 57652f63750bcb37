#!/usr/bin/env bash
# cluster.sh - cluster mode on PostgreSQL (issue 15, BENCHMARKS.md): durable
# purchases through HAProxy to a two-node creditd cluster, beside the
# pgbench hot-row purchase on the same PostgreSQL cluster with the same
# settings, in one run.
#
# Uses the peers' own PostgreSQL cluster (15/peers, port $PGPORT, made by
# benches/peers/postgres.sh if missing; synchronous_commit on, as shipped),
# a database `creditd_bench` in it (dropped and made again), two
# `creditd serve` nodes and HAProxy with deploy/haproxy.cfg; stops what it
# started.
#
# Needs: apt-get install postgresql haproxy wrk curl.
# Env: DURATION seconds per run (20), PGPORT (55432), PORT (HAProxy, 18400),
#      OUT_DIR (target/cluster/<time>), BIN (the creditd to measure; default
#      this checkout's release build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
DURATION=${DURATION:-20}
PGPORT=${PGPORT:-55432}
PORT=${PORT:-18400}
OUT_DIR=${OUT_DIR:-$PWD/target/cluster/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/cluster.txt"
{ echo "# cluster.sh $(date -u +%FT%TZ) $(uname -r) $(nproc) cores $(git rev-parse --short HEAD 2>/dev/null)"; lscpu | grep 'Model name'; } | tee "$OUT"

echo "== pgbench hot-row purchase, 64 clients, synchronous_commit=on"
PGPORT=$PGPORT CLIENTS=64 DURATION=$DURATION OUT_DIR="$OUT_DIR" benches/peers/postgres.sh >/dev/null
grep '^synchronous_commit=on' "$OUT_DIR/postgres.txt" | tee -a "$OUT"

pg_ctlcluster 15 peers start 2>/dev/null || true
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pg_ctlcluster 15 peers stop 2>/dev/null || true
}
trap cleanup EXIT
PSQL=(runuser -u postgres -- psql -X -q -h /var/run/postgresql -p "$PGPORT")
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS creditd_bench" -c "DROP ROLE IF EXISTS creditd_bench" \
  -c "CREATE ROLE creditd_bench LOGIN PASSWORD 'bench'" -c "CREATE DATABASE creditd_bench OWNER creditd_bench" >/dev/null
"${PSQL[@]}" -d postgres -tAc "SELECT 'settings: ' || string_agg(name || '=' || setting, ' ') FROM pg_settings WHERE name IN
  ('synchronous_commit','fsync','wal_sync_method','full_page_writes','commit_delay','shared_buffers')" | tee -a "$OUT"
STORE="postgres://creditd_bench:bench@127.0.0.1:$PGPORT/creditd_bench"

if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=${CARGO_TARGET_DIR:-./target}/release/creditd
fi
CREDITD_STORE=$STORE $BIN init >/dev/null
NANOBANANA_API_KEY=bench $BIN fake-provider --listen 127.0.0.1:18499 --credits 9000000000000000 >/dev/null 2>&1 &
pids+=($!)
for node in 1 2; do
  CREDITD_STORE=$STORE CREDITD_LISTEN=127.0.0.1:1840$node CREDITD_ADVERTISE_URL=http://127.0.0.1:1840$node \
    NANOBANANA_BASE_URL=http://127.0.0.1:18499 NANOBANANA_API_KEY=bench RUST_LOG=warn \
    $BIN serve >"$OUT_DIR/node$node.log" 2>&1 &
  pids+=($!)
done
sed -e "s/127.0.0.1:8000/127.0.0.1:$PORT/" -e "s/127.0.0.1:8081/127.0.0.1:18401/" -e "s/127.0.0.1:8082/127.0.0.1:18402/" \
  deploy/haproxy.cfg >"$OUT_DIR/haproxy.cfg"
haproxy -db -f "$OUT_DIR/haproxy.cfg" >"$OUT_DIR/haproxy.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.1; done
make_key "http://127.0.0.1:$PORT"

echo "== creditd on PostgreSQL through HAProxy, durable purchases, wrk" | tee -a "$OUT"
for c in 16 64; do
  threads=$(( c < 2 ? 1 : 2 ))
  result=$(NONCE="cluster-$c-$$" wrk -t"$threads" -c"$c" -d"${DURATION}s" --latency -s benches/purchase.lua "http://127.0.0.1:$PORT")
  rps=$(echo "$result" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$result" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$result" | awk '$1 == "99%" {print $2}')
  failed=$(echo "$result" | awk '/non-200/ {print $3}')
  echo "creditd clients=$c rps=$rps p50=$p50 p99=$p99 non200=${failed:-0}" | tee -a "$OUT"
done
pgbench=$(awk '/^synchronous_commit=on clients=64/ { for (i = 1; i <= NF; i++) if ($i ~ /^tps=/) print substr($i, 5) }' "$OUT_DIR/postgres.txt")
echo "ratio at 64: creditd / pgbench hot row = $(awk -v a="$rps" -v b="$pgbench" 'BEGIN { printf "%.1f", a / b }')" | tee -a "$OUT"
CREDITD_STORE=$STORE $BIN check | tail -1 | tee -a "$OUT"
echo "results in $OUT_DIR"
