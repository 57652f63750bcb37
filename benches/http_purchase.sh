#!/usr/bin/env bash
# Durable purchases over HTTP on loopback, measured with wrk: creditd demo
# (release build, real sled directory on the local disk) with group commit,
# then with one sync per purchase. Usage: benches/http_purchase.sh
# Env: DURATION (s, default 20), CONNS (default "1 16 64"), PORT (default 18181).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
cargo build --release --quiet
DURATION=${DURATION:-20}
CONNS=${CONNS:-"1 16 64"}
PORT=${PORT:-18181}
for mode in group per-change; do
  CREDITD_LISTEN=127.0.0.1:$PORT CREDITD_COMMIT_MODE=$mode RUST_LOG=warn \
    "${CARGO_TARGET_DIR:-./target}/release/creditd" demo --provider-credits 9000000000000000 >/dev/null 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.1; done
  make_key "http://127.0.0.1:$PORT"
  for c in $CONNS; do
    threads=$(( c < 2 ? 1 : 2 ))
    echo "== commit mode $mode, $c connections, ${DURATION}s"
    NONCE="$mode-$c-$$" wrk -t"$threads" -c"$c" -d"${DURATION}s" --latency -s benches/purchase.lua \
      "http://127.0.0.1:$PORT" | grep -E "Requests/sec|Latency|50%|90%|99%|non-200|requests in"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
