#!/usr/bin/env bash
# million_users.sh - creditd with 1 000 000 users that have wallets (issue 8,
# BENCHMARKS.md): resident memory, restart-to-ready time, and purchase
# throughput with 1 000 vs 1 000 000 users on the same data directory.
#
# 1. `creditd init` and `creditd serve` on a fresh data directory, against `creditd fake-provider`.
# 2. `creditd loadtest --sequential` buys once for each of USERS users (every
#    user gets a wallet, a ledger entry and an idempotency record).
# 3. RSS (now and peak) of the server and its hot wallets; then a restart
#    after SIGTERM, timed from exec to the first 200 from /readyz.
# 4. Throughput: uniform purchases over 1 000 users, then over all USERS
#    users, ROUNDS times in turn (the machine is noisy; the store grows
#    from run to run); then the median of each and their ratio, and RSS.
# 5. A restart after SIGKILL, timed the same way.
#
# Needs: curl. Env: USERS (1000000), SECONDS_PER_RUN (20), ROUNDS (3),
# CLIENTS (64), DATA_DIR (/var/tmp/creditd-million, deleted first), PORT
# (18302), PROVIDER_PORT (18091), OUT (target/million/<time>.txt), BIN (the
# binary to measure; default: this checkout's release build).
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-64}
DATA_DIR=${DATA_DIR:-/var/tmp/creditd-million}
PORT=${PORT:-18302}
PROVIDER_PORT=${PROVIDER_PORT:-18091}
mkdir -p target/million
OUT=${OUT:-target/million/$(date -u +%Y%m%dT%H%M%SZ).txt}
if [ -z "${BIN:-}" ]; then
  BIN=${CARGO_TARGET_DIR:-./target}/release/creditd
  cargo build --release -q
fi

NANOBANANA_API_KEY=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
CREDITD_ADMIN_TOKEN=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export NANOBANANA_API_KEY CREDITD_ADMIN_TOKEN
export NANOBANANA_BASE_URL=http://127.0.0.1:$PROVIDER_PORT
export CREDITD_LISTEN=127.0.0.1:$PORT CREDITD_DATA_DIR=$DATA_DIR RUST_LOG=warn
URL=http://127.0.0.1:$PORT

log() { echo "$*" | tee -a "$OUT"; }
rss() { awk '/^(VmRSS|VmHWM)/ {printf "%s %d MiB  ", $1, $2 / 1024}' "/proc/$1/status"; }
ms_now() { date +%s%3N; }
server=""
provider=""
cleanup() {
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null || true
  [ -n "$provider" ] && kill "$provider" 2>/dev/null || true
}
trap cleanup EXIT

# Starts the server; READY_MS is the milliseconds from exec to ready.
start_server() {
  local started
  started=$(ms_now)
  "$BIN" serve >>"$OUT.server.log" 2>&1 &
  server=$!
  until curl -sf "$URL/readyz" >/dev/null 2>&1; do
    kill -0 "$server" 2>/dev/null || { echo "server exited; see $OUT.server.log" >&2; exit 1; }
    sleep 0.01
  done
  READY_MS=$(( $(ms_now) - started ))
}

rm -rf "$DATA_DIR"
"$BIN" init --data-dir "$DATA_DIR" >/dev/null
"$BIN" fake-provider --listen "127.0.0.1:$PROVIDER_PORT" --credits 9000000000000000 >/dev/null 2>&1 &
provider=$!
until curl -sf -H "Authorization: Bearer $NANOBANANA_API_KEY" "$NANOBANANA_BASE_URL/api/v1/common/credit" >/dev/null; do
  sleep 0.05
done

log "# million_users.sh $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, USERS=$USERS CLIENTS=$CLIENTS"
start_server
log "fresh start to ready: $READY_MS ms"

log "== populate: one purchase for each of $USERS users (--sequential)"
"$BIN" loadtest --url "$URL" --clients "$CLIENTS" --sequential --users "$USERS" --operations "$USERS" \
  --run-id populate --user-prefix million --quiet | tee -a "$OUT"
log "after populating: $(rss "$server")  data directory $(du -sm "$DATA_DIR" | cut -f1) MiB"
log "hot wallets: $(curl -s "$URL/metrics" | awk '$1 == "creditd_hot_wallets" {print $2}')"

log "== restart after SIGTERM"
kill -TERM "$server"; wait "$server" 2>/dev/null || true
start_server
log "restart to ready: $READY_MS ms  $(rss "$server")"

# throughput NAME USERS: one run; its purchases per second go to $OUT.rates as "NAME RATE".
throughput() {
  log "== throughput with $2 users (uniform), ${SECONDS_PER_RUN}s"
  "$BIN" loadtest --url "$URL" --clients "$CLIENTS" --users "$2" --seconds "$SECONDS_PER_RUN" --run-id "$1-$round" \
    --user-prefix million --quiet | tee -a "$OUT" | tee /dev/stderr | awk -v name="$1" '$1 == "purchase" {print name, $3}' >>"$OUT.rates"
}
rm -f "$OUT.rates"
for round in $(seq 1 "$ROUNDS"); do
  throughput few 1000
  throughput all "$USERS"
done
median() { awk -v name="$1" '$1 == name {print $2}' "$OUT.rates" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
few=$(median few)
all=$(median all)
log "median of $ROUNDS: $few/s with 1 000 users, $all/s with $USERS users: $(awk -v f="$few" -v a="$all" 'BEGIN {printf "%+.1f %%", (a - f) * 100 / f}')"
log "after the throughput runs: $(rss "$server")"

log "== restart after SIGKILL"
kill -9 "$server"; wait "$server" 2>/dev/null || true
start_server
log "restart to ready: $READY_MS ms  $(rss "$server")"
log "results in $OUT"
