#!/usr/bin/env bash
# Saga throughput on shop-host with real Redis (see BENCHMARKS.md): how many orders per second
# the saga takes from placed to final when nothing else runs (the drain), and the host's CPU
# per confirmed order, then saga latency at a fixed rate. Not part of CI.
#
# What it runs, on loopback ports picked free, under one temp dir removed at exit:
# redis-server (no persistence) and shop-host (stores and logs in the temp dir; compiled code
# cached in <BENCH_ROOT>/target/bench-saga-state, so a second run starts warm). It stocks one
# product, places BENCH_SAGA_WARMUP orders (default 20) and waits until they are final and the
# host has handled no Redis message for a second. Then:
#
#   drain: holds the orders outbox's relay lease (the row of outbox_relay in orders.db, or of
#   relay_lease before that table, written with the sqlite3 shell, valid for an hour), so
#   nothing orders writes is published; places
#   BENCH_DRAIN_ORDERS orders (1000; they stay pending) from 8 connections; reads the CPU time
#   of shop-host and redis-server (utime+stime, /proc/<pid>/stat) and the machine's; releases
#   the lease (expires_at = 0) and places one more order, whose relay publishes all N+1
#   order-created events at once. The drain ends when none of these orders is pending or
#   reserved (GET /orders?customer_id=&status=, every 0.2 s, up to BENCH_DRAIN_LIMIT s, 600).
#   Reported: the seconds from the release to then, (N+1)/seconds, host CPU ms per confirmed
#   order to then and to "quiet" (no Redis message handled for 1 s: notifications and stock
#   commits that follow a final order included), and the CPU the rest of the machine used
#   meanwhile (everything but shop-host and redis-server: the poller, and anyone else), and the
#   instances the host started per confirmed order, to quiet (its shop_host_instances_total):
#   those for Redis messages, and those for HTTP requests.
#
#   rate: bench/rate.py saga at BENCH_SAGA_RATE orders/s (100) for BENCH_SECONDS (10): p50/p99
#   placed -> confirmed from each order's own history, and host CPU ms per confirmed order from
#   the first POST to quiet. The CPU includes the POSTs and rate.py's polling (one
#   GET /orders/<id> per order and per 0.2 s round it is still open).
#
# BENCH_ROOT=<checkout> measures another checkout of this repository (e.g. a git worktree of an
# older commit): its target/release/shop-host, spin.toml (and so its components in
# target/wasm32-wasip2/release) and runtime-config.toml; this checkout's scripts drive it.
# Knobs: BENCH_DRAIN_ORDERS (1000), BENCH_DRAIN_LIMIT (600 s), BENCH_SAGA_RATE (100),
# BENCH_SECONDS (10), BENCH_SAGA_WARMUP (20), BENCH_SKIP_BUILD=1 (use what BENCH_ROOT has
# built), BENCH_WAIT_LOAD=<max> (before measuring, wait up to BENCH_WAIT_LOAD_SECS, 600, for
# the 1-minute load average to fall below <max>, then measure anyway; the load at each
# measurement is printed either way), BENCH_KEEP=1 (keep the temp dir: host log, component logs, stores),
# BENCH_SYSCALLS=1 (count the system calls shop-host makes from the lease's release to quiet with
# `perf stat` on its syscall tracepoints, installing perf with apt when missing, and report them
# per confirmed order: counts, which a machine's drifting speed does not change, where the CPU
# times do; perf's tracing also slows the host, so the CPU times of such a run are higher).
set -euo pipefail

source "$(dirname "$0")/../scripts/lib.sh"
BENCH_ROOT=$(cd "${BENCH_ROOT:-$ROOT}" && pwd)
ORDERS=${BENCH_DRAIN_ORDERS:-1000}
DRAIN_LIMIT=${BENCH_DRAIN_LIMIT:-600}
SAGA_RATE=${BENCH_SAGA_RATE:-100}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
WARMUP=${BENCH_SAGA_WARMUP:-20}
WAIT_LOAD=${BENCH_WAIT_LOAD:-}
WAIT_LOAD_SECS=${BENCH_WAIT_LOAD_SECS:-600}
ADMIN_TOKEN=bench-admin-token
export BENCH_ADMIN_TOKEN=$ADMIN_TOKEN
SKU=bench-saga
HOST_BIN=$BENCH_ROOT/target/release/shop-host
MANIFEST=$BENCH_ROOT/spin.toml

log() { printf '[saga %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

ensure_wasm_target
ensure_build_tools
ensure_redis_installed
ensure_apt_package redis-cli redis-tools
ensure_apt_package sqlite3 sqlite3
ensure_apt_package curl curl
ensure_apt_package python3 python3

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
    log "building shop-host and the components (release) in $BENCH_ROOT"
    (
        cd "$BENCH_ROOT"
        export CARGO_TARGET_DIR=$BENCH_ROOT/target
        cargo build --release -q -p shop-host
        lines_of components component_packages functions/*
        build_components "${components[@]}"
    )
fi
[[ -x $HOST_BIN ]] || { log "no $HOST_BIN (build it, or unset BENCH_SKIP_BUILD)"; exit 1; }

WORK=$(mktemp -d -t shop-saga.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${BENCH_KEEP:-} ]]; then log "kept $WORK (host.log, logs/, stores/)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
busy_ticks() { awk 'NR == 1 { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
load1() { cut -d' ' -f1 /proc/loadavg; }
TICK_MS=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN { print 1000 / hz }')
# CPU ms per order: ticks, orders.
per_order() { awk -v t="$1" -v n="$2" -v ms="$TICK_MS" 'BEGIN { if (n > 0) printf "%.2f", t * ms / n; else print "n/a" }'; }

# Runs "$@" until it succeeds, every 0.2 s, for up to $1 seconds; exits the script if never.
wait_for() {
    local limit=$1 what=$2 deadline=$(( $(now_ms) + $1 * 1000 ))
    shift 2
    until "$@"; do
        if (( $(now_ms) > deadline )); then log "gave up after ${limit}s waiting for: $what"; exit 1; fi
        sleep 0.2
    done
}

# --- redis, the runtime config (stores and logs under $WORK) and the host ---
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
REDIS=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
mkdir -p "$WORK/stores"
{
    printf 'log_dir = "%s"\n\n' "$WORK/logs"
    sed -E "s#^path = \".*/([^/\"]+)\"#path = \"$WORK/stores/\\1\"#" "$BENCH_ROOT/runtime-config.toml"
} >"$WORK/runtime-config.toml"
ORDERS_DB=$WORK/stores/orders.db

HOST_PORT=$(free_port)
METRICS_PORT=$(free_port)
BASE="http://127.0.0.1:$HOST_PORT"
SPIN_VARIABLE_ADMIN_TOKEN=$ADMIN_TOKEN SPIN_VARIABLE_INTERNAL_KEY=bench-internal-key \
    SPIN_VARIABLE_PAYMENT_PROVIDER_KEY=bench-provider-key RUST_LOG=warn "$HOST_BIN" up \
    -f "$MANIFEST" --listen "127.0.0.1:$HOST_PORT" --state-dir "$BENCH_ROOT/target/bench-saga-state" \
    --runtime-config-file "$WORK/runtime-config.toml" \
    --metrics-listen "127.0.0.1:$METRICS_PORT" \
    --variable "redis_address=redis://127.0.0.1:$REDIS_PORT" \
    --variable "app_base_url=$BASE" \
    --variable "payment_provider_url=$BASE/payment-sim" \
    --variable "payment_provider_origin=$BASE" \
    --variable "notification_webhook_origin=$BASE" \
    2>>"$WORK/host.log" &
HOST_PID=$!
PIDS+=("$HOST_PID")
log "shop-host $HOST_BIN (pid $HOST_PID) on $BASE, redis on $REDIS_PORT"

healthy() {
    kill -0 "$HOST_PID" 2>/dev/null || { log "shop-host exited:"; tail -20 "$WORK/host.log" >&2; exit 1; }
    curl -sf -o /dev/null "$BASE/orders/health"
}
# Subscriptions per channel of the manifest's Redis triggers ("channel count" lines).
python3 bench/replicas.py subscribed "$MANIFEST" >"$WORK/subscriptions.txt"
subscribed() {
    local channel count actual
    while read -r channel count; do
        actual=$("${REDIS[@]}" pubsub numsub "$channel" | sed -n 2p)
        (( actual >= count )) || return 1
    done <"$WORK/subscriptions.txt"
}
wait_for 300 "shop-host answering" healthy
wait_for 60 "every subscription of $MANIFEST" subscribed

# Waits (up to DRAIN_LIMIT) until the host has handled no Redis message for a whole second.
wait_quiet() {
    wait_redis_quiet "$METRICS_PORT" $(( $(now_ms) + DRAIN_LIMIT * 1000 )) && return 0
    log "the host kept handling Redis messages for $DRAIN_LIMIT s"
    exit 1
}
# Instances the host has started for trigger $1 (redis or http), from its metrics.
instances() {
    curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" \
        | awk -v t="trigger=\"$1\"" '/^shop_host_instances_total\{/ && index($0, t) { n += $NF } END { printf "%d", n }'
}
none_open() {
    local s
    for s in pending reserved; do
        [[ $(curl -sf -H "authorization: Bearer $ADMIN_TOKEN" "$BASE/orders?status=$s&limit=1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["orders"]))') == 0 ]] || return 1
    done
}

# --- seed and warm up ---
curl -sf -o /dev/null -X PUT "$BASE/inventory/products/$SKU" \
    -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
    -d '{"name":"Bench saga","price_cents":1999,"available":900000000}'
log "warm-up: $WARMUP orders"
python3 bench/rate.py place "$BASE" "$WARMUP" "$SKU" warmup >/dev/null
wait_for "$DRAIN_LIMIT" "the warm-up orders final" none_open
wait_quiet
[[ -f $ORDERS_DB ]] || { log "no orders database at $ORDERS_DB"; exit 1; }

if [[ -n $WAIT_LOAD ]]; then
    log "waiting (up to ${WAIT_LOAD_SECS}s) for the 1-minute load average to fall below $WAIT_LOAD (now $(load1))"
    load_deadline=$(( $(now_ms) + WAIT_LOAD_SECS * 1000 ))
    until awk -v l="$(load1)" -v m="$WAIT_LOAD" 'BEGIN { exit !(l < m) }'; do
        if (( $(now_ms) > load_deadline )); then log "load still $(load1) after ${WAIT_LOAD_SECS}s: measuring anyway"; break; fi
        sleep 5
    done
fi

# --- drain ---
sql() { sqlite3 -bail -cmd '.timeout 5000' "$ORDERS_DB" "$1"; }
DRAIN_LOAD=$(load1)
HOLD_UNTIL=$(( $(now_ms) + 3600000 ))
if [[ -n $(sql "SELECT 1 FROM sqlite_master WHERE name = 'outbox_relay'") ]]; then
    LEASE_TABLE=outbox_relay
    UNSENT="seq > (SELECT sent_through FROM outbox_relay)"
    sql "UPDATE outbox_relay SET holder = 'bench', expires_at = $HOLD_UNTIL"
else
    LEASE_TABLE=relay_lease
    UNSENT="published = 0"
    sql "INSERT OR REPLACE INTO relay_lease (id, holder, expires_at) VALUES (1, 'bench', $HOLD_UNTIL)"
fi
log "drain: relay lease held; placing $ORDERS orders (load $DRAIN_LOAD)"
read -r PLACED PLACE_S < <(python3 bench/rate.py place "$BASE" "$ORDERS" "$SKU" drain)
UNPUBLISHED=$(sql "SELECT count(*) FROM outbox WHERE $UNSENT" 2>/dev/null || echo '?')
log "placed $PLACED in ${PLACE_S}s; unpublished outbox rows: $UNPUBLISHED; releasing the lease"
I0_REDIS=$(instances redis); I0_HTTP=$(instances http)
H0=$(cpu_ticks "$HOST_PID"); R0=$(cpu_ticks "$REDIS_PID"); B0=$(busy_ticks); T0=$(now_ms)
SYSCALLS=(pwrite64 pread64 fcntl fsync futex write mprotect)
if [[ -n ${BENCH_SYSCALLS:-} ]]; then
    ensure_apt_package perf linux-perf
    perf stat -x, -o "$WORK/syscalls.csv" -p "$HOST_PID" \
        -e "$(printf 'syscalls:sys_enter_%s,' "${SYSCALLS[@]}" | sed 's/,$//')" &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    sleep 0.5  # perf attaches before the drain starts
fi
sql "UPDATE $LEASE_TABLE SET expires_at = 0"
curl -sf -o /dev/null -X POST "$BASE/orders" -H 'content-type: application/json' \
    -d "{\"customer_id\":\"drain\",\"items\":[{\"sku\":\"$SKU\",\"quantity\":1}],\"payment_token\":\"tok_visa\"}"
read -r DONE_MS CONFIRMED CANCELLED OPEN B1 H1 R1 < <(python3 bench/rate.py drain "$BASE" drain "$DRAIN_LIMIT" "$HOST_PID" "$REDIS_PID")
(( OPEN == 0 )) || log "drain: $OPEN orders still open after $DRAIN_LIMIT s"
wait_quiet
HQ=$(cpu_ticks "$HOST_PID")
DRAIN_SYSCALLS="not counted (BENCH_SYSCALLS=1 counts them)"
if [[ -n ${BENCH_SYSCALLS:-} ]]; then
    kill -INT "$PERF_PID" && wait "$PERF_PID" || true
    # perf's CSV: count,unit,event,...; one line per tracepoint.
    DRAIN_SYSCALLS="perf counted nothing (see $WORK/syscalls.csv)"
    [[ -s $WORK/syscalls.csv ]] && DRAIN_SYSCALLS=$(awk -F, -v c="$CONFIRMED" '$3 ~ /sys_enter_/ { sub(/.*sys_enter_/, "", $3); printf "%s%s %.1f", sep, $3, $1 / c; sep = ", " }' "$WORK/syscalls.csv")
fi
DRAIN_MESSAGES=$(awk -v n=$(( $(instances redis) - I0_REDIS )) -v c="$CONFIRMED" 'BEGIN { printf "%.2f", n / c }')
DRAIN_REQUESTS=$(awk -v n=$(( $(instances http) - I0_HTTP )) -v c="$CONFIRMED" 'BEGIN { printf "%.2f", n / c }')
DRAIN_S=$(awk -v ms=$(( DONE_MS - T0 )) 'BEGIN { printf "%.1f", ms / 1000 }')
DRAIN_RATE=$(awk -v n=$(( CONFIRMED + CANCELLED )) -v ms=$(( DONE_MS - T0 )) 'BEGIN { printf "%.0f", n * 1000 / ms }')
DRAIN_CPU=$(per_order $(( H1 - H0 )) "$CONFIRMED")
DRAIN_CPU_QUIET=$(per_order $(( HQ - H0 )) "$CONFIRMED")
DRAIN_REDIS=$(per_order $(( R1 - R0 )) "$CONFIRMED")
DRAIN_HOST_CORES=$(awk -v t=$(( H1 - H0 )) -v ms=$(( DONE_MS - T0 )) -v tk="$TICK_MS" 'BEGIN { printf "%.2f", t * tk / ms }')
DRAIN_OTHERS=$(awk -v t=$(( (B1 - B0) - (H1 - H0) - (R1 - R0) )) -v tk="$TICK_MS" 'BEGIN { printf "%.0f", t * tk }')
log "drain: ${DRAIN_S}s, $CONFIRMED confirmed, $CANCELLED cancelled"

# --- saga at a fixed rate ---
RATE_LOAD=$(load1)
log "saga: $SAGA_RATE orders/s for ${SECONDS_PER_RUN}s (load $RATE_LOAD)"
H2=$(cpu_ticks "$HOST_PID"); R2=$(cpu_ticks "$REDIS_PID"); B2=$(busy_ticks)
read -r S_P50 S_P99 S_DONE S_PLACED < <(python3 bench/rate.py saga "$BASE" "$SAGA_RATE" "$SECONDS_PER_RUN" "$SKU")
wait_quiet
H3=$(cpu_ticks "$HOST_PID"); R3=$(cpu_ticks "$REDIS_PID"); B3=$(busy_ticks)
RATE_CPU=$(per_order $(( H3 - H2 )) "$S_DONE")
RATE_OTHERS=$(awk -v t=$(( (B3 - B2) - (H3 - H2) - (R3 - R2) )) -v tk="$TICK_MS" 'BEGIN { printf "%.0f", t * tk }')

cat <<TABLE

$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), code: $BENCH_ROOT ($(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git -C "$BENCH_ROOT" status --porcelain -- crates functions host spin.toml 2>/dev/null) ]] && echo ' + working tree'))

| measurement | value |
| --- | --- |
| drain: $(( ORDERS + 1 )) orders placed -> final (load $DRAIN_LOAD) | ${DRAIN_S} s, $DRAIN_RATE orders/s ($CONFIRMED confirmed, $CANCELLED cancelled, $OPEN open) |
| drain: host CPU per confirmed order, to final / to quiet | $DRAIN_CPU ms / $DRAIN_CPU_QUIET ms ($DRAIN_HOST_CORES cores busy) |
| drain: redis-server CPU per confirmed order; rest of the machine meanwhile | $DRAIN_REDIS ms; $DRAIN_OTHERS ms |
| drain: instances per confirmed order, to quiet: Redis messages; HTTP requests (the charge, feed reads, the poller's) | $DRAIN_MESSAGES; $DRAIN_REQUESTS |
| drain: shop-host's system calls per confirmed order, to quiet | $DRAIN_SYSCALLS |
| saga placed -> confirmed at $SAGA_RATE orders/s for ${SECONDS_PER_RUN}s (load $RATE_LOAD) | p50 $S_P50 ms, p99 $S_P99 ms ($S_DONE confirmed / $S_PLACED placed) |
| host CPU per confirmed order at $SAGA_RATE/s (POSTs and polling included, to quiet); rest of the machine meanwhile (rate.py included) | $RATE_CPU ms; $RATE_OTHERS ms |
TABLE
