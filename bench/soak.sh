#!/usr/bin/env bash
# Soak run: `bench/soak.sh [orders] [seconds]` (default 2000 orders over 600 s). Not part of CI.
# Builds the components, the host and the soak driver (tests/src/bin/soak.rs), then runs the
# shop (real host, real Redis, real components) while placing orders at a steady rate and
# injecting random faults: Redis and the host killed and restarted, the payment provider down,
# flaky or slow, events published twice. It waits for quiescence (sweeping every 30 s, as
# scripts/up.sh does) and prints a table: outcomes, duplicated effects, invariant violations
# (the e2e fixture's checker), time to quiesce, faults by kind. Exits non-zero on any
# duplicate, violation or order left open. SOAK_SKIP_BUILD=1 uses what is already built.
source "$(dirname "$0")/../scripts/lib.sh"

ORDERS=${1:-2000}
SECONDS_TOTAL=${2:-600}

if [[ -z ${SOAK_SKIP_BUILD:-} ]]; then
  ensure_wasm_target
  ensure_redis_installed
  lines_of apps component_packages functions/*
  build_components "${apps[@]}"
  log "building the host and the soak driver"
  cargo build -q -p shop-host -p shop-e2e --bin shop-host --bin soak
fi

log "soak: $ORDERS orders over $SECONDS_TOTAL s (started $(date -u '+%F %H:%M UTC'))"
exec target/debug/soak "$ORDERS" "$SECONDS_TOTAL"
