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
PORT=${PORT:-18500}
OUT=${OUT:-target/store_ab.txt}

. benches/ab.sh

purchase_rounds store_ab.sh
