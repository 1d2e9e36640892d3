#!/usr/bin/env bash
# Builds every component and the host, starts redis-server if none answers, and runs the app.
# Extra arguments go to `shop-host up` (e.g. --listen 0.0.0.0:3000).
# SHOP_SQL_STORE=postgres keeps orders, inventory and billing in PostgreSQL instead of SQLite
# files (docs/adr/0009): databases shop_orders, shop_inventory and shop_billing on
# $PGHOST:$PGPORT (default 127.0.0.1:5432) as $PGUSER (default postgres, with $PGPASSWORD if set),
# created when missing; the machine's PostgreSQL cluster is started when none answers.
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

if [ "${SHOP_SQL_STORE:-sqlite}" = postgres ]; then
  ensure_postgres_installed
  export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
  if ! pg_isready -q; then
    log "starting the machine's PostgreSQL cluster"
    cluster=$(ls /etc/postgresql | sort -V | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
    for _ in $(seq 50); do pg_isready -q && break; sleep 0.2; done
  fi
  password=${PGPASSWORD:+ password=$PGPASSWORD}
  for fn in orders inventory billing; do
    psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'shop_$fn'" | grep -q 1 ||
      psql -d postgres -qc "CREATE DATABASE shop_$fn"
    export "SPIN_VARIABLE_${fn^^}_POSTGRES_URL=host=$PGHOST port=$PGPORT user=$PGUSER dbname=shop_$fn sslmode=disable$password"
  done
  export SPIN_VARIABLE_SQL_STORE=postgres SPIN_VARIABLE_POSTGRES_ORIGIN="postgres://$PGHOST:$PGPORT"
  log "SQL stores on PostgreSQL at $PGHOST:$PGPORT: shop_orders, shop_inventory, shop_billing"
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
