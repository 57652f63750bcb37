# Sourced by the A/B benchmark scripts (keys_ab.sh, store_ab.sh, journal_ab.sh,
# hot_wallets_ab.sh) once they set BEFORE (a git rev), PORT and OUT: builds
# this build ($NOW) and BEFORE ($BEFORE_BIN), and gives them `creditd demo`
# started and stopped on $PORT and durable purchases measured with wrk at 64
# connections. Needs: wrk, curl, git, benches/api_key.sh sourced first.
# Env: DURATION (10 s per run), ROUNDS (3), CARGO_TARGET_DIR (./target).
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
URL="http://127.0.0.1:$PORT"
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}

# build_before REV: builds REV once into target/ab-REV/bin/creditd; sets BEFORE_BIN.
build_before() {
  local dir="target/ab-$1"
  if [ ! -x "$dir/bin/creditd" ]; then
    rm -rf "$dir/src" && git worktree add -f "$dir/src" "$1" >/dev/null 2>&1
    (cd "$dir/src" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release -q)
    mkdir -p "$dir/bin" && cp "$dir/target/release/creditd" "$dir/bin/creditd"
    git worktree remove --force "$dir/src"
  fi
  BEFORE_BIN="$dir/bin/creditd"
}

pid=""
# start BINARY: `creditd demo` on $URL, once ready.
start() {
  CREDITD_LISTEN=127.0.0.1:$PORT RUST_LOG=warn "$1" demo --provider-credits 9000000000000000 >/dev/null 2>&1 &
  pid=$!
  until curl -sf "$URL/readyz" >/dev/null; do sleep 0.1; done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
trap 'kill $pid 2>/dev/null || true' EXIT

# purchases LABEL: one wrk run, printed as "LABEL RPS req/s p99 P non-2xx N".
purchases() {
  NONCE="$1-$RANDOM-$$" wrk -t2 -c64 -d"${DURATION}s" --latency -s benches/purchase.lua "$URL" |
    awk -v label="$1" '/Requests\/sec/ {rps=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$4} END {printf "%s %s req/s p99 %s non-2xx %s\n", label, rps, p99, bad+0}'
}

# purchase_rounds NAME: ROUNDS alternating wrk runs of $BEFORE_BIN and $NOW
# (each with a fresh demo and API key) into $OUT, then their means.
purchase_rounds() {
  {
    echo "# $1 $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; before=$BEFORE now=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo +uncommitted); ${DURATION}s per run"
    for round in $(seq 1 "$ROUNDS"); do
      start "$BEFORE_BIN"; make_key "$URL"; purchases "before"; stop
      start "$NOW"; make_key "$URL"; purchases "now"; stop
    done
  } | tee "$OUT"
  awk '/^before/ {b += $2; nb++} /^now/ {n += $2; nn++} END {printf "mean before %.0f/s, now %.0f/s: %+.1f %%\n", b / nb, n / nn, (n / nn - b / nb) * 100 / (b / nb)}' "$OUT" | tee -a "$OUT"
}

cargo build --release -q
NOW=${CARGO_TARGET_DIR:-./target}/release/creditd
build_before "$BEFORE"
