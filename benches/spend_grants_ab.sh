#!/usr/bin/env bash
# spend_grants_ab.sh - spends of 1 credit at 64 connections (wrk,
# benches/spend.lua) from 1 000 users, each funded by GRANTS purchases of
# `studio` (500 credits each) before the run, so that every wallet holds
# GRANTS grants (SPEC §13): the cost of a spend as a wallet's grants grow.
# BEFORE (a git rev, built by benches/ab.sh) against this build, alternating,
# ROUNDS rounds, medians. Needs wrk, curl, xargs. Env: BEFORE, GRANTS (default
# "1 10 100"), DURATION (10), ROUNDS (3), PORT (18760).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
BEFORE=${BEFORE:?a git rev}
PORT=${PORT:-18760}
OUT=${OUT:-target/spend_grants_ab.txt}
. benches/ab.sh
build_before "$BEFORE"
NOW=${CARGO_TARGET_DIR:-./target}/release/creditd
cargo build --release -q
echo "# spend_grants_ab.sh $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; before=$BEFORE now=$(git rev-parse --short HEAD); ${DURATION}s per run" | tee -a "$OUT"
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for grants in ${GRANTS:-1 10 100}; do
  for round in $(seq 1 "$ROUNDS"); do
    for build in before now; do
      bin=$NOW; [ "$build" = before ] && bin=$BEFORE_BIN
      start "$bin"
      make_key "$URL"
      for n in $(seq 1 "$grants"); do
        seq 1 1000 | xargs -P 32 -I{} curl -sf -o /dev/null -X POST "$URL/api/credits/purchase" \
          -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
          -H "Idempotency-Key: fund-$n-{}" -d "{\"userId\":\"bench-{}\",\"packageId\":\"studio\"}"
      done
      rps=$(USERS=1000 NONCE="spend-$RANDOM" wrk -t2 -c64 -d"${DURATION}s" -s benches/spend.lua "$URL" | awk '/Requests\/sec/ {print $2}')
      echo "grants $grants $build $rps" | tee -a "$OUT"
      stop
    done
  done
  b=$(awk -v g="$grants" '$1 == "grants" && $2 == g && $3 == "before" {print $4}' "$OUT" | median)
  n=$(awk -v g="$grants" '$1 == "grants" && $2 == g && $3 == "now" {print $4}' "$OUT" | median)
  awk -v g="$grants" -v b="$b" -v n="$n" 'BEGIN {printf "median spend/s with %d grants a wallet: before %.0f, now %.0f: %+.1f %%\n", g, b, n, (n - b) * 100 / b}' | tee -a "$OUT"
done
