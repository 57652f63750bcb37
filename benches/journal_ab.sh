#!/usr/bin/env bash
# journal_ab.sh - issue 16's first lever, guarded: durable purchases/s at 64
# connections (wrk, benches/purchase.lua, an API key on every request) of the
# build before the journal (BEFORE: each group one sled batch + flush +
# fdatasync of sled's log) and of this build (each group one journal record +
# fdatasync, applied to sled without a flush, sled checkpointed about once a
# second), alternating, ROUNDS rounds each, in one run on this machine.
# Needs: wrk, curl, git. Env: BEFORE (git rev, default af75e27), DURATION (10),
# ROUNDS (3), PORT (18600), CARGO_TARGET_DIR (./target).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/api_key.sh
BEFORE=${BEFORE:-af75e27}
PORT=${PORT:-18600}
OUT=${OUT:-target/journal_ab.txt}

. benches/ab.sh
purchase_rounds journal_ab.sh
