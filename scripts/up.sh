#!/usr/bin/env bash
# Builds every component and the host, starts redis-server if none answers, and runs the app.
# Extra arguments go to `shop-host up` (e.g. --listen 0.0.0.0:3000).
source "$(dirname "$0")/lib.sh"

REDIS_HOST=127.0.0.1
REDIS_PORT=${REDIS_PORT:-6379}

ensure_wasm_target
ensure_build_tools
ensure_redis_installed
ensure_openssl_dev
lines_of apps component_packages functions/*
build_components "${apps[@]}"
log "building the host"
cargo build -p shop-host

if ! redis_answers "$REDIS_HOST" "$REDIS_PORT"; then
  log "starting redis-server on $REDIS_HOST:$REDIS_PORT (state in .spin/redis)"
  mkdir -p .spin/redis
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
    --dir "$ROOT/.spin/redis" --appendonly yes --logfile "$ROOT/.spin/redis/redis.log"
  for _ in $(seq 50); do redis_answers "$REDIS_HOST" "$REDIS_PORT" && break; sleep 0.1; done
fi

export SPIN_VARIABLE_ADMIN_TOKEN="${SPIN_VARIABLE_ADMIN_TOKEN:-dev-admin-token}"
# Development values of the other secrets; a deployment sets its own (deploy/README.md).
export SPIN_VARIABLE_INTERNAL_KEY="${SPIN_VARIABLE_INTERNAL_KEY:-dev-internal-key}"
export SPIN_VARIABLE_PAYMENT_PROVIDER_KEY="${SPIN_VARIABLE_PAYMENT_PROVIDER_KEY:-sk_test_dev}"
export SPIN_VARIABLE_REDIS_ADDRESS="${SPIN_VARIABLE_REDIS_ADDRESS:-redis://$REDIS_HOST:$REDIS_PORT}"
log "serving on http://127.0.0.1:3000 (admin token: $SPIN_VARIABLE_ADMIN_TOKEN)"

# Catch-up (docs/adr/0001, decision 7): something outside the app calls each consumer's sweep
# on a timer, as the CronJob in deploy/spinkube does in production. Stops with the host.
SWEEP_BASE_URL=${SWEEP_BASE_URL:-http://127.0.0.1:3000}
SWEEP_EVERY_SECS=${SWEEP_EVERY_SECS:-30}
if command -v curl >/dev/null 2>&1; then
  host_pid=$$
  (
    while sleep "$SWEEP_EVERY_SECS" && kill -0 "$host_pid" 2>/dev/null; do
      for fn in orders inventory billing notifications; do
        curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $SPIN_VARIABLE_ADMIN_TOKEN" \
          "$SWEEP_BASE_URL/$fn/sweep" || log "sweep of $fn failed"
      done
    done
  ) &
else
  log "curl is missing: no periodic sweep (lost events recover with the next event only)"
fi

exec target/debug/shop-host up --from spin.toml --runtime-config-file runtime-config.toml "$@"
