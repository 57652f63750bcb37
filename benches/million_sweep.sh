#!/usr/bin/env bash
# million_sweep.sh - where the million-user drop comes from (BENCHMARKS.md,
# issue 25): purchases/s over a growing number of distinct users, each run on
# a fresh copy of one data directory that already holds 1 000 000 wallets.
#
# 1. Once (or when BASE is missing): `creditd init` and one purchase for each
#    of 1 000 000 users (`loadtest --sequential`) into BASE.
# 2. For each count in SWEEP: copy BASE, `creditd serve` on the copy, buy for
#    SECONDS over that many users (uniform), print purchases/s, the server's
#    RSS and the load generator's CPU seconds (it shares the cores).
# 3. With PERF set, `perf record` samples the server (999 Hz, no call graph)
#    during each run into target/million/perf-<count>.data.
#
# Needs: curl, GNU time (/usr/bin/time); perf for PERF. Env: SWEEP ("1000
# 20000 100000 1000000"), SECONDS_PER_RUN (15), BASE
# (/var/tmp/creditd-sweep-base), WALLETS (1000000: how many BASE is
# populated with, when it is made), SERVE_ARGS (extra `serve` arguments, e.g.
# `--config FILE` to try a setting), BIN (default: this checkout's release
# build). Any CREDITD_* variable set outside passes to the server.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-"1000 20000 100000 1000000"}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
BASE=${BASE:-/var/tmp/creditd-sweep-base}
WALLETS=${WALLETS:-1000000}
DATA=$BASE-run
SERVE_ARGS=${SERVE_ARGS:-}
if [ -z "${BIN:-}" ]; then
  BIN=${CARGO_TARGET_DIR:-./target}/release/creditd
  cargo build --release -q
fi
mkdir -p target/million

NANOBANANA_API_KEY=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
CREDITD_ADMIN_TOKEN=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export NANOBANANA_API_KEY CREDITD_ADMIN_TOKEN RUST_LOG=warn
export NANOBANANA_BASE_URL=http://127.0.0.1:18095 CREDITD_LISTEN=127.0.0.1:18305
URL=http://127.0.0.1:18305
server=""
provider=""
cleanup() {
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null || true
  [ -n "$provider" ] && kill "$provider" 2>/dev/null || true
}
trap cleanup EXIT

"$BIN" fake-provider --listen 127.0.0.1:18095 --credits 9000000000000000 >/dev/null 2>&1 &
provider=$!
until curl -sf -H "Authorization: Bearer $NANOBANANA_API_KEY" "$NANOBANANA_BASE_URL/api/v1/common/credit" >/dev/null; do
  sleep 0.05
done

# serve DIR: starts the server on DIR and waits until it is ready.
serve() {
  # shellcheck disable=SC2086 # SERVE_ARGS is a list of arguments
  CREDITD_DATA_DIR=$1 "$BIN" serve $SERVE_ARGS >/dev/null 2>&1 &
  server=$!
  until curl -sf "$URL/readyz" >/dev/null 2>&1; do
    kill -0 "$server" 2>/dev/null || { echo "server exited" >&2; exit 1; }
    sleep 0.05
  done
}
stop() { kill -TERM "$server"; wait "$server" 2>/dev/null || true; server=""; }

if [ ! -d "$BASE" ]; then
  "$BIN" init --data-dir "$BASE" >/dev/null
  serve "$BASE"
  echo "populating $BASE with $WALLETS wallets"
  "$BIN" loadtest --url "$URL" --clients 64 --sequential --users "$WALLETS" --operations "$WALLETS" \
    --run-id populate --user-prefix million --quiet | grep '^purchase'
  stop
fi

echo "# million_sweep.sh $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, ${SECONDS_PER_RUN}s a run"
echo "users      purchases/s  p99 ms  server RSS  load generator CPU s"
for users in $SWEEP; do
  rm -rf "$DATA"
  cp -r "$BASE" "$DATA"
  serve "$DATA"
  if [ -n "${PERF:-}" ]; then
    perf record -F 999 -p "$server" -o "target/million/perf-$users.data" -- sleep $((SECONDS_PER_RUN - 4)) >/dev/null 2>&1 &
    perf=$!
  fi
  line=$( { /usr/bin/time -f "cpu %U %S" "$BIN" loadtest --url "$URL" --clients 64 --users "$users" \
    --seconds "$SECONDS_PER_RUN" --run-id "sweep$RANDOM" --user-prefix million --quiet; } 2>&1 )
  rate=$(awk '$1 == "purchase" {print $3, $6}' <<<"$line")
  cpu=$(awk '$1 == "cpu" {print $2 + $3}' <<<"$line")
  rss=$(awk '/^VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$server/status")
  [ -n "${PERF:-}" ] && wait "$perf"
  printf '%-10s %-12s %-7s %-11s %s\n' "$users" "${rate% *}" "${rate#* }" "$rss" "$cpu"
  stop
done
rm -rf "$DATA"
