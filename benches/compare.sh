#!/usr/bin/env bash
# compare.sh - creditd and its peers, one after the other in one run on this
# machine (issue 8, BENCHMARKS.md). The peer scripts in benches/peers/ are
# copies of ../shared/peers/ (same workloads): the raw fdatasync rate, a
# PostgreSQL hot-row purchase (pgbench, synchronous commit), a Redis Lua
# check-and-decrement with appendfsync always, and an actix-web hello-world
# (the HTTP ceiling). creditd is measured with the same wrk as the ceiling:
# durable purchases with unique idempotency keys at 1, 16 and 64 connections.
#
# Needs: apt-get install postgresql redis-server wrk fio gcc curl.
# Env: DURATION seconds per run (20), OUT_DIR (target/compare/<time>),
#      PEERS ("fsync postgres redis actix_hello"), PORT for creditd (18300).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
DURATION=${DURATION:-20}
OUT_DIR=${OUT_DIR:-$PWD/target/compare/$(date -u +%Y%m%dT%H%M%SZ)}
PEERS=${PEERS-"fsync postgres redis actix_hello"}
PORT=${PORT:-18300}
export DURATION OUT_DIR
mkdir -p "$OUT_DIR"
{ echo "# compare.sh $(date -u +%FT%TZ) $(uname -r) $(nproc) cores"; lscpu | grep 'Model name'; } | tee "$OUT_DIR/machine.txt"

for peer in $PEERS; do
  echo "== $peer"
  "benches/peers/$peer.sh"
done

echo "== creditd"
cargo build --release -q
OUT="$OUT_DIR/creditd.txt"
CREDITD_LISTEN=127.0.0.1:$PORT RUST_LOG=warn "${CARGO_TARGET_DIR:-./target}/release/creditd" demo --provider-credits 9000000000000000 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.1; done
make_key "http://127.0.0.1:$PORT"
echo "# creditd $(git rev-parse --short HEAD 2>/dev/null || echo unknown) durable purchases, wrk, ${DURATION}s per run" | tee "$OUT"
batches() { curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^creditd_commit_batch_size_(bucket|sum|count)' || true; }
for c in 1 16 64; do
  threads=$(( c < 2 ? 1 : 2 ))
  batches >"$OUT_DIR/batches-before-$c.txt"
  result=$(NONCE="compare-$c-$$" wrk -t"$threads" -c"$c" -d"${DURATION}s" --latency -s benches/purchase.lua "http://127.0.0.1:$PORT")
  batches >"$OUT_DIR/batches-after-$c.txt"
  rps=$(echo "$result" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$result" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$result" | awk '$1 == "99%" {print $2}')
  failed=$(echo "$result" | awk '/non-200/ {print $3}')
  # Group-commit batch sizes during this run: the histogram's deltas.
  batch=$(paste "$OUT_DIR/batches-before-$c.txt" "$OUT_DIR/batches-after-$c.txt" | awk '
    { split($0, f, /[ \t]+/); name = f[1]; delta = f[4] - f[2] }
    name ~ /_sum$/ { sum = delta } name ~ /_count$/ { count = delta }
    name ~ /_bucket/ { match(name, /le="[^"]+"/); le = substr(name, RSTART + 4, RLENGTH - 5); buckets = buckets sprintf(" le%s:%d", le, delta) }
    END { printf "mean_batch=%.1f syncs=%d buckets=%s", (count ? sum / count : 0), count, buckets }')
  echo "clients=$c rps=$rps p50=$p50 p99=$p99 non200=${failed:-0} $batch" | tee -a "$OUT"
  peak=$(awk -v a="${peak:-0}" -v b="$rps" 'BEGIN { print (b > a ? b : a) }')
done
# Latency at half the peak: wrk cannot pace, so creditd loadtest does, with
# latency counted from when each purchase was due (no coordinated omission).
half=$(awk -v p="$peak" 'BEGIN { printf "%d", p / 2 }')
echo "# half of the peak ($peak/s): creditd loadtest --rate $half --clients 64" | tee -a "$OUT"
"${CARGO_TARGET_DIR:-./target}/release/creditd" loadtest --url "http://127.0.0.1:$PORT" --api-key "$API_KEY" --clients 64 --rate "$half" --seconds "$DURATION" \
  --run-id "half-$$" --quiet | tee -a "$OUT"
echo "results in $OUT_DIR"
