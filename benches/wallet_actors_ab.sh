#!/usr/bin/env bash
# wallet_actors_ab.sh - the per-user wallet actors and the decider that
# never reads the store, against the build before them (BEFORE: the
# inventory held every active wallet and read cold ones itself), in one run
# on this machine, alternating, ROUNDS rounds each, medians:
#  1. durable purchases/s at 64 connections (wrk, benches/purchase.lua);
#  2. hold + capture, and spend, at 64 connections (benches/http_flows.sh).
# Needs: wrk, curl, git. Env: BEFORE (git rev, default 032bf7d), DURATION
# (10), ROUNDS (3), PORT (18720), CARGO_TARGET_DIR (./target).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
BEFORE=${BEFORE:-032bf7d}
PORT=${PORT:-18720}
OUT=${OUT:-target/wallet_actors_ab.txt}

. benches/ab.sh
purchase_rounds wallet_actors_ab.sh
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for round in $(seq 1 "$ROUNDS"); do
  for build in before now; do
    bin=$NOW; [ "$build" = before ] && bin=$BEFORE_BIN
    BIN=$bin DURATION=$DURATION PORT=$((PORT + 1)) benches/http_flows.sh |
      awk -v build="$build" '/^== hold/ {flow="hold+capture"} /^== funding/ {flow=""} /^== spend/ {flow="spend"} /Requests\/sec/ && flow != "" {print "flow", flow, build, $2}' |
      tee -a "$OUT"
  done
done
for flow in hold+capture spend; do
  b=$(awk -v f="$flow" '$1 == "flow" && $2 == f && $3 == "before" {print $4}' "$OUT" | median)
  n=$(awk -v f="$flow" '$1 == "flow" && $2 == f && $3 == "now" {print $4}' "$OUT" | median)
  awk -v f="$flow" -v b="$b" -v n="$n" 'BEGIN {printf "median %s before %.0f/s, now %.0f/s: %+.1f %%\n", f, b, n, (n - b) * 100 / b}' | tee -a "$OUT"
done
b=$(awk '/^before/ {print $2}' "$OUT" | median); n=$(awk '/^now/ {print $2}' "$OUT" | median)
awk -v b="$b" -v n="$n" 'BEGIN {printf "median purchases before %.0f/s, now %.0f/s: %+.1f %%\n", b, n, (n - b) * 100 / b}' | tee -a "$OUT"
