#!/usr/bin/env bash
# Contract tests: Schemathesis (a tool no one here wrote) attacks the running app from each
# function's OpenAPI document (functions/<fn>/openapi.json, served at GET /<fn>/openapi.json).
# Fails on any 5xx, any response that does not conform to its documented schema, status or
# headers, any rejected input not answered in the documented error shape, accepted invalid
# input, and methods not answered with 405 + Allow.
#
# The app runs like the end-to-end fixtures run it: a real redis-server on a free port, the
# host with every store and log in a temp dir (its state dir under target/ keeps only the
# compile cache), and the address variables pointing at this run's ports. Environment: CONTRACT_MAX_EXAMPLES (default 25 per operation),
# CONTRACT_SEED (default fixed, for reproducible runs), CONTRACT_SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"

MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-25}
SEED=${CONTRACT_SEED:-20261126}
ADMIN_TOKEN=contract-admin-token
VENV="$ROOT/target/contract-venv"
SCHEMATHESIS_VERSION="4.32.5"

ensure_redis_installed
ensure_openssl_dev
ensure_apt_package curl curl
ensure_apt_package python3 python3
# Debian's own python3 has neither ensurepip (venv) nor pip until python3-venv is installed.
if ! python3 -c 'import ensurepip' 2>/dev/null &&
  [ "$(python3 -c 'import sys; print(sys.prefix)')" = /usr ]; then
  apt_install python3-venv
fi

PYDEPS="$ROOT/target/contract-py"
has_version() { "$@" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; }
# A venv under target/; where python3-venv is missing, a plain `pip install --target`.
if has_version "$VENV/bin/schemathesis"; then
  schemathesis=("$VENV/bin/schemathesis")
elif has_version env PYTHONPATH="$PYDEPS" python3 -m schemathesis.cli; then
  schemathesis=(env PYTHONPATH="$PYDEPS" python3 -m schemathesis.cli)
elif python3 -m venv --clear "$VENV" >/dev/null 2>&1; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  schemathesis=("$VENV/bin/schemathesis")
else
  log "installing schemathesis $SCHEMATHESIS_VERSION into $PYDEPS"
  python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$PYDEPS" \
    "schemathesis==$SCHEMATHESIS_VERSION"
  schemathesis=(env PYTHONPATH="$PYDEPS" python3 -m schemathesis.cli)
fi

if [ "${CONTRACT_SKIP_BUILD:-}" != 1 ]; then
  ensure_wasm_target
  ensure_build_tools
  lines_of apps component_packages functions/*
  build_components "${apps[@]}"
  log "building the host"
  cargo build -p shop-host
fi
[ -x target/debug/shop-host ] || { log "target/debug/shop-host is missing: build it (cargo build -p shop-host)"; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK=$(mktemp -d -t shop-contract.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK" \
  >"$WORK/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis_answers 127.0.0.1 "$REDIS_PORT" && break; sleep 0.1; done
redis_answers 127.0.0.1 "$REDIS_PORT" || { cat "$WORK/redis.log" >&2; exit 1; }

# The repository's runtime config with every store path made absolute under $WORK/stores,
# and logs and the default store there too: the shared state dir keeps only the code cache.
mkdir -p "$WORK/stores"
{
  printf 'log_dir = "%s"\n\n[key_value_store.default]\ntype = "spin"\npath = "%s"\n\n' \
    "$WORK/logs" "$WORK/stores/default.db"
  sed -E "s|^([[:space:]]*path[[:space:]]*=[[:space:]]*)\"([^\"]*/)?([^\"/]+)\"|\1\"$WORK/stores/\3\"|" \
    runtime-config.toml
} >"$WORK/runtime-config.toml"

PORT=$(free_port)
ORIGIN="http://127.0.0.1:$PORT"
# One bearer for every route schemathesis calls: the admin token is also the provider's key.
SPIN_VARIABLE_ADMIN_TOKEN="$ADMIN_TOKEN" SPIN_VARIABLE_PAYMENT_PROVIDER_KEY="$ADMIN_TOKEN" \
  SPIN_VARIABLE_INTERNAL_KEY=contract-internal-key target/debug/shop-host up --from spin.toml \
  --listen "127.0.0.1:$PORT" --state-dir "$ROOT/target/contract-state" \
  --runtime-config-file "$WORK/runtime-config.toml" \
  --variable "redis_address=redis://127.0.0.1:$REDIS_PORT" \
  --variable "app_base_url=$ORIGIN" \
  --variable "payment_provider_url=$ORIGIN/payment-sim" \
  --variable "payment_provider_origin=$ORIGIN" \
  --variable "notification_webhook_origin=$ORIGIN" \
  >"$WORK/host.log" 2>&1 &
pids+=($!)
log "waiting for the app on $ORIGIN"
for _ in $(seq 600); do
  curl -fsS "$ORIGIN/.well-known/spin/health" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { tail -50 "$WORK/host.log" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "$ORIGIN/.well-known/spin/health" >/dev/null || { tail -50 "$WORK/host.log" >&2; exit 1; }

# A product to order, so that stateful runs can take orders through the saga.
curl -fsS -X PUT "$ORIGIN/inventory/products/SKU-001" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -H 'content-type: application/json' -d '{"name": "Mug", "price_cents": 1250, "available": 1000000}' \
  >/dev/null

failed=()
# Runs schemathesis against one function's served document; extra arguments filter operations.
contract() {
  local fn="$1" label="$2"
  shift 2
  log "schemathesis: $label"
  if ! (cd "$WORK" && "${schemathesis[@]}" --config-file "$ROOT/scripts/schemathesis.toml" \
    run "$ORIGIN/$fn/openapi.json" --url "$ORIGIN" \
    --checks all --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 1 \
    --header "Authorization: Bearer $ADMIN_TOKEN" --request-timeout 20 \
    --suppress-health-check too_slow,filter_too_much --warnings off --no-color --generation-database none --output-sanitize false "$@"); then
    failed+=("$label")
  fi
}

contract orders orders
contract inventory inventory
contract billing billing
contract notifications notifications
# Injected latency (up to 30 s per call) would stall every later charge: the fault switch is
# tested on its own, last, and reset afterwards.
contract payment-sim payment-sim --exclude-operation-id setFaults
contract payment-sim "payment-sim faults" --include-operation-id setFaults \
  --phases examples,coverage,fuzzing
curl -fsS -X PUT "$ORIGIN/payment-sim/faults" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -H 'content-type: application/json' -d '{"fail_rate": 0, "latency_ms": 0, "down": false}' >/dev/null

if grep -q '"level":"ERROR"' "$WORK/host.log"; then
  log "host errors during the run:"
  grep '"level":"ERROR"' "$WORK/host.log" | tail -20 >&2
fi
if [ ${#failed[@]} -gt 0 ]; then
  log "contract failures: ${failed[*]}"
  exit 1
fi
log "every function honours its contract"
