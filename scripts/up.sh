#!/usr/bin/env bash
# Builds every component and the host, starts redis-server if none answers, and runs the app.
# Extra arguments go to `shop-host up` (e.g. --listen 0.0.0.0:3000).
source "$(dirname "$0")/lib.sh"

REDIS_HOST=127.0.0.1
REDIS_PORT=${REDIS_PORT:-6379}

ensure_wasm_target
ensure_redis_installed
mapfile -t apps < <(component_packages functions/*)
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
export SPIN_VARIABLE_REDIS_ADDRESS="${SPIN_VARIABLE_REDIS_ADDRESS:-redis://$REDIS_HOST:$REDIS_PORT}"
log "serving on http://127.0.0.1:3000 (admin token: $SPIN_VARIABLE_ADMIN_TOKEN)"
exec target/debug/shop-host up --from spin.toml --runtime-config-file runtime-config.toml "$@"
