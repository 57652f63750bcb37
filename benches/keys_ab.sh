#!/usr/bin/env bash
# keys_ab.sh - issue 14's two measurements, in one run on this machine:
#  1. A/B: durable purchases/s at 64 connections (wrk, benches/purchase.lua)
#     of the build before API keys (BEFORE, no key) and of this build (a
#     storefront key on every request), alternating, ROUNDS rounds each;
#  2. each build's purchases/s alone and beside 2,000 catalogue reads/s
#     (creditd loadtest --mix catalogue=100 --rate 2000, paced), alternating.
#  PARTS ("ab reads") chooses which to run.
# Needs: wrk, curl, git. Env: BEFORE (git rev, default b7c47dc), DURATION (10),
# ROUNDS (3), PORT (18400).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
BEFORE=${BEFORE:-b7c47dc}
PORT=${PORT:-18400}
OUT=${OUT:-target/keys_ab.txt}

. benches/ab.sh

{
  echo "# keys_ab.sh $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; before=$BEFORE now=$(git rev-parse --short HEAD); ${DURATION}s per run"
  for round in $(seq 1 "$ROUNDS"); do
    case "${PARTS:-ab reads}" in *ab*) ;; *) break ;; esac
    start "$BEFORE_BIN"; API_KEY="" purchases "before-keys"; stop
    start "$NOW"; make_key "$URL"; purchases "with-keys"; stop
  done
  # Reads beside purchases, on both builds: before, the catalogue asked the
  # inventory actor; now it is computed from what the actor published.
  for round in $(seq 1 "$ROUNDS"); do
    case "${PARTS:-ab reads}" in *reads*) ;; *) break ;; esac
    for build in before now; do
      if [ "$build" = before ]; then start "$BEFORE_BIN"; API_KEY=""; else start "$NOW"; make_key "$URL"; fi
      purchases "$build-alone"
      "$NOW" loadtest --url "$URL" --api-key "${API_KEY:-unused}" --mix catalogue=100,purchase=0,hold=0,spend=0 \
        --clients 64 --rate 2000 --seconds $((DURATION + 2)) --quiet > target/keys_ab_reads.txt 2>&1 &
      reads=$!
      sleep 1
      purchases "$build-beside-2000-reads/s"
      wait "$reads" || true
      grep -E "^ *catalogue" target/keys_ab_reads.txt | head -1 | sed 's/^ */  reads (count, rate, p50, p90, p99, p99.9, max ms): /'
      stop
    done
  done
} | tee "$OUT"
