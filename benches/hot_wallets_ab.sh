#!/usr/bin/env bash
# hot_wallets_ab.sh - issue 16's second lever, guarded: the build before hot
# wallets (BEFORE: every wallet operation through a per-user wallet actor,
# then the inventory) against this build (the inventory decides on the wallet
# it holds in memory), in one run on this machine, alternating:
#  1. durable purchases/s at 64 connections (wrk, benches/purchase.lua),
#     ROUNDS rounds each;
#  2. the hold + capture and spend flows (benches/http_flows.sh), once each.
# Needs: wrk, curl, git. Env: BEFORE (git rev, default a2b3652), DURATION
# (10), ROUNDS (3), PORT (18700), CARGO_TARGET_DIR (./target).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
BEFORE=${BEFORE:-a2b3652}
PORT=${PORT:-18700}
OUT=${OUT:-target/hot_wallets_ab.txt}

. benches/ab.sh
purchase_rounds hot_wallets_ab.sh
for build in before now; do
  bin=$NOW; [ "$build" = before ] && bin=$BEFORE_BIN
  echo "== flows, $build" | tee -a "$OUT"
  BIN=$bin DURATION=$DURATION PORT=$((PORT + 1)) benches/http_flows.sh | grep -E "^==|Requests/sec| 99%" | tee -a "$OUT"
done
