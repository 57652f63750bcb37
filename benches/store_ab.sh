#!/usr/bin/env bash
# store_ab.sh - issue 15's sled A/B: durable purchases/s at 64 connections
# (wrk, benches/purchase.lua, an API key on every request) on the sled store
# of the build before the store boundary (BEFORE) and of this build,
# alternating, ROUNDS rounds each, in one run on this machine.
# Needs: wrk, curl, git. Env: BEFORE (git rev, default a5af261), DURATION (10),
# ROUNDS (3), PORT (18500), CARGO_TARGET_DIR (./target).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
BEFORE=${BEFORE:-a5af261}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18500}
OUT=${OUT:-target/store_ab.txt}

cargo build --release -q
NOW=${CARGO_TARGET_DIR:-./target}/release/creditd
. benches/ab.sh
build_before "$BEFORE"

{
  echo "# store_ab.sh $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; before=$BEFORE now=$(git rev-parse --short HEAD); ${DURATION}s per run"
  for round in $(seq 1 "$ROUNDS"); do
    start "$BEFORE_BIN"; make_key "$URL"; purchases "before"; stop
    start "$NOW"; make_key "$URL"; purchases "now"; stop
  done
} | tee "$OUT"
awk '/^before/ {b += $2; nb++} /^now/ {n += $2; nn++} END {printf "mean before %.0f/s, now %.0f/s: %+.1f %%\n", b / nb, n / nn, (n / nn - b / nb) * 100 / (b / nb)}' "$OUT" | tee -a "$OUT"
