#!/usr/bin/env bash
# commit_stalls.sh - how long the commit loop's groups take under a paced
# load (issue 16: p99 at half the peak): `creditd demo`, then `creditd
# loadtest --rate RATE --clients 64` for DURATION seconds, then the
# creditd_commit_duration_seconds histogram (each group's journal write,
# fdatasync, sled writes and, every 250 ms, the checkpoint) and the
# batch sizes, from /metrics.
# Needs: curl. Env: RATE (10000), DURATION (10), PORT (18700), BIN (this build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
[ -n "${BIN:-}" ] || cargo build --release -q
BIN=${BIN:-${CARGO_TARGET_DIR:-./target}/release/creditd}
RATE=${RATE:-10000}
DURATION=${DURATION:-10}
PORT=${PORT:-18700}
URL="http://127.0.0.1:$PORT"
CREDITD_LISTEN=127.0.0.1:$PORT RUST_LOG=warn "$BIN" demo --provider-credits 9000000000000000 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until curl -sf "$URL/readyz" >/dev/null; do sleep 0.1; done
make_key "$URL"
echo "# commit_stalls.sh $(date -u +%FT%TZ) $("$BIN" --version 2>/dev/null || echo creditd) rate=$RATE clients=64 ${DURATION}s"
"$BIN" loadtest --url "$URL" --api-key "$API_KEY" --clients 64 --rate "$RATE" --seconds "$DURATION" --run-id "stalls-$$" --quiet
curl -s "$URL/metrics" | grep -E '^creditd_commit_duration_seconds_(bucket|sum|count)' |
  awk '/_bucket/ { match($1, /le="[^"]+"/); le[++n] = substr($1, RSTART + 4, RLENGTH - 5); count[n] = $2 }
       /_sum/ { sum = $2 } /_count/ { total = $2 }
       END { printf "groups: %d, %.1f s in groups\n", total, sum
             for (i = 1; i <= n; i++) printf "  <= %s s: %d (%.3f %%)\n", le[i], count[i], 100 * count[i] / (total ? total : 1) }'
