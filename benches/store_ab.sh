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
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
BEFORE=${BEFORE:-a5af261}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18500}
URL="http://127.0.0.1:$PORT"
OUT=${OUT:-target/store_ab.txt}

cargo build --release -q
NOW=${CARGO_TARGET_DIR:-./target}/release/creditd
BEFORE_DIR=target/ab-$BEFORE
if [ ! -x "$BEFORE_DIR/bin/creditd" ]; then
  rm -rf "$BEFORE_DIR/src" && git worktree add -f "$BEFORE_DIR/src" "$BEFORE" >/dev/null 2>&1
  (cd "$BEFORE_DIR/src" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release -q)
  mkdir -p "$BEFORE_DIR/bin" && cp "$BEFORE_DIR/target/release/creditd" "$BEFORE_DIR/bin/creditd"
  git worktree remove --force "$BEFORE_DIR/src"
fi

pid=""
start() { # binary
  CREDITD_LISTEN=127.0.0.1:$PORT RUST_LOG=warn "$1" demo --provider-credits 9000000000000000 >/dev/null 2>&1 &
  pid=$!
  until curl -sf "$URL/readyz" >/dev/null; do sleep 0.1; done
  make_key "$URL"
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
trap 'kill $pid 2>/dev/null || true' EXIT
purchases() { # label
  NONCE="$1-$RANDOM-$$" wrk -t2 -c64 -d"${DURATION}s" --latency -s benches/purchase.lua "$URL" |
    awk -v label="$1" '/Requests\/sec/ {rps=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$4} END {printf "%s %s req/s p99 %s non-2xx %s\n", label, rps, p99, bad+0}'
}

{
  echo "# store_ab.sh $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; before=$BEFORE now=$(git rev-parse --short HEAD); ${DURATION}s per run"
  for round in $(seq 1 "$ROUNDS"); do
    start "$BEFORE_DIR/bin/creditd"; purchases "before"; stop
    start "$NOW"; purchases "now"; stop
  done
} | tee "$OUT"
awk '/^before/ {b += $2; nb++} /^now/ {n += $2; nn++} END {printf "mean before %.0f/s, now %.0f/s: %+.1f %%\n", b / nb, n / nn, (n / nn - b / nb) * 100 / (b / nb)}' "$OUT" | tee -a "$OUT"
