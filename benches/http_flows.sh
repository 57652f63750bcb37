#!/usr/bin/env bash
# Hold + capture and spend throughput over HTTP at 64 connections, measured
# with wrk against `creditd demo` (release build, group commit, a real sled
# directory on the local disk). Usage: benches/http_flows.sh
# Env: DURATION (s, default 20), CONNS (default 64), PORT (default 18182),
# BIN (the creditd to measure; default this build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
[ -n "${BIN:-}" ] || cargo build --release --quiet
BIN=${BIN:-${CARGO_TARGET_DIR:-./target}/release/creditd}
DURATION=${DURATION:-20}
CONNS=${CONNS:-64}
PORT=${PORT:-18182}
URL="http://127.0.0.1:$PORT"
CREDITD_LISTEN=127.0.0.1:$PORT RUST_LOG=warn \
  "$BIN" demo --provider-credits 9000000000000000 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "$URL/readyz" >/dev/null; do sleep 0.1; done
make_key "$URL"
report() { grep -E "Requests/sec|Latency|50%|90%|99%|non-200|requests in|captures"; }

echo "== hold + capture, $CONNS connections, ${DURATION}s"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s benches/hold_capture.lua "$URL" | report

[ -n "${SKIP_SPEND:-}" ] && exit 0
echo "== funding 1000 spenders (purchases, not measured)"
USERS=1000 NONCE="fund-$$" wrk -t2 -c64 -d5s -s benches/purchase.lua "$URL" | grep -E "requests in|non-200"

echo "== spend 1 credit, $CONNS connections, ${DURATION}s"
USERS=1000 NONCE="spend-$$" wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s benches/spend.lua "$URL" | report
