#!/usr/bin/env bash
# One-command benchmark of the shop on shop-host, with a native baseline (see BENCHMARKS.md).
# Sets up what it needs on a fresh Debian machine (the wasm32-wasip2 target; a C toolchain,
# redis-server, wrk, curl, jq and python3 with apt; oha with cargo), builds in release, starts
# redis-server + shop-host (temp state dir) + bench/native-baseline on free loopback ports,
# serves bench/empty-component on a second shop-host (and on `wasmtime serve` when Wasmtime
# 48's CLI is on the PATH), drives load with wrk (closed loop), oha (POST /orders at a fixed
# rate) and bench/rate.py (the saga at a fixed rate), and prints one table. Not part of CI.
# Knobs: BENCH_SECONDS (default 10), BENCH_CONNECTIONS (16), BENCH_PROFILE (release; "dev" runs
# the debug host, whose dependencies are optimised too), BENCH_SKIP_BUILD=1 (use the binaries
# and components already built), BENCH_SAGA_RATE (100/s).
set -euo pipefail

source "$(dirname "$0")/../scripts/lib.sh"
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
THREADS=2
ADMIN_TOKEN=bench-admin-token
SAGA_RATE=${BENCH_SAGA_RATE:-100}
PROFILE=${BENCH_PROFILE:-release}
case "$PROFILE" in
    release) BIN=target/release; PROFILE_FLAG=--release ;;
    dev) BIN=target/debug; PROFILE_FLAG= ;;
    *) echo "BENCH_PROFILE must be release or dev" >&2; exit 1 ;;
esac

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

ensure_wasm_target
ensure_build_tools
ensure_redis_installed
ensure_apt_package wrk wrk
ensure_apt_package curl curl
ensure_apt_package jq jq
ensure_apt_package python3 python3
# oha sends at a fixed rate from Rust, at a fifth of the CPU a Python sender needs: on two cores
# the sender's own delays would otherwise be counted as the host's latency.
OHA_VERSION=1.16.0
if ! oha --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    log "installing oha $OHA_VERSION (cargo install)"
    cargo install -q --locked oha --version "$OHA_VERSION"
fi

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
    log "building shop-host and native-baseline ($PROFILE) and the components (release)"
    cargo build $PROFILE_FLAG -q -p shop-host -p native-baseline
    lines_of components component_packages functions/* bench/empty-component
    build_components "${components[@]}"
fi

WORK=$(mktemp -d -t shop-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# Polls URL until it answers 2xx; prints the milliseconds since START_MS.
wait_ready() {
    local url=$1 start_ms=$2 deadline=$(( $2 + 120000 ))
    until curl -sf -o /dev/null "$url"; do
        if (( $(now_ms) > deadline )); then log "$url never answered"; exit 1; fi
        sleep 0.005
    done
    echo $(( $(now_ms) - start_ms ))
}

# Samples a process's VmRSS every 200 ms into FILE (max kept by the reader) until killed.
sample_rss() { while kill -0 "$1" 2>/dev/null; do rss_mib "$1" >>"$2"; echo >>"$2"; sleep 0.2; done; }

# wrk in closed loop; prints "req_per_s p50_ms p99_ms non2xx".
run_wrk() {
    local out
    out=$(wrk -t"$(( $1 < THREADS ? $1 : THREADS ))" -c"$1" -d"${SECONDS_PER_RUN}s" --latency "${@:2}")
    echo "$out" | awk '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /Requests\/sec/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx/ { bad = $NF }
        END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad }'
}

# oha at a fixed rate with latency counted from each request's due time (no coordinated
# omission); prints "p50_ms p99_ms created sent". Args: rate, URL, then oha's request options.
run_rate() {
    oha -q "$1" -z "${SECONDS_PER_RUN}s" -c 64 --latency-correction --no-tui \
        --output-format json "${@:3}" "$2" | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d["latencyPercentiles"]
codes = d["statusCodeDistribution"]
sent = sum(codes.values()) + sum(d.get("errorDistribution", {}).values())
print("%.2f %.2f %d %d" % (p["p50"] * 1000, p["p99"] * 1000, codes.get("201", 0), sent))
'
}

# --- redis and the runtime config (every store under $WORK/stores) ---
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/stores"
sed -E "s#^path = \".*/([^/\"]+)\"#path = \"$WORK/stores/\\1\"#" runtime-config.toml >"$WORK/runtime-config.toml"

HOST_PORT=$(free_port)
METRICS_PORT=$(free_port)
BASE="http://127.0.0.1:$HOST_PORT"
HOST_PID=
start_host() {
    SPIN_VARIABLE_ADMIN_TOKEN=$ADMIN_TOKEN SPIN_VARIABLE_INTERNAL_KEY=bench-internal-key \
    SPIN_VARIABLE_PAYMENT_PROVIDER_KEY=bench-provider-key RUST_LOG=warn "$BIN/shop-host" up \
        -f spin.toml --listen "127.0.0.1:$HOST_PORT" --state-dir "$WORK/state" \
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
}
stop_host() { kill "$HOST_PID"; wait "$HOST_PID" 2>/dev/null || true; }

# --- start-up: cold (empty code cache) then warm (cache from the first start) ---
log "start-up cold (empty compile cache)"
t0=$(now_ms); start_host; COLD_MS=$(wait_ready "$BASE/inventory/health" "$t0")
stop_host
log "start-up warm"
t0=$(now_ms); start_host; WARM_MS=$(wait_ready "$BASE/inventory/health" "$t0")
sleep 2
IDLE_RSS=$(rss_mib "$HOST_PID")

# --- seed ---
put_product() {
    curl -sf -o /dev/null -X PUT "$BASE/inventory/products/$1" \
        -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
        -d "{\"name\":\"Bench $1\",\"price_cents\":1999,\"available\":$2}"
}
put_product bench-read 1000
put_product bench-order 900000000
# Redis subscriptions are live once the trigger has subscribed; give it a moment after start.
sleep 1

sample_rss "$HOST_PID" "$WORK/rss.txt" &
SAMPLER=$!
PIDS+=("$SAMPLER")

# --- reads: Wasm, then the native twin over the same inventory database ---
log "GET /inventory/products/:sku on the host (${SECONDS_PER_RUN}s, $CONNECTIONS connections)"
read -r W_RPS W_P50 W_P99 W_BAD < <(run_wrk "$CONNECTIONS" "$BASE/inventory/products/bench-read")
# A Wasm route that touches no store: instantiation, WASI-HTTP and the guest's router alone,
# the most any Wasm route can reach on this host.
log "GET /inventory/health on the host (${SECONDS_PER_RUN}s, $CONNECTIONS connections)"
read -r WF_RPS WF_P50 WF_P99 WF_BAD < <(run_wrk "$CONNECTIONS" "$BASE/inventory/health")
log "GET /inventory/health on the host, 1 connection"
read -r WH_RPS WH_P50 WH_P99 _ < <(run_wrk 1 "$BASE/inventory/health")
# Instantiation alone, from the host's histogram over every request so far: mean, and the
# bucket holding the median.
read -r I_MEAN I_MEDIAN < <(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | python3 -c '
import re, sys
series = "component=\"inventory\",trigger=\"http\""
buckets, total, count = [], 0.0, 0.0
for line in sys.stdin:
    m = re.match(r"shop_host_instantiation_duration_seconds_(bucket|sum|count)\{(.*)\} (\S+)", line)
    if not m or series not in m[2]:
        continue
    if m[1] == "bucket":
        le = re.search(r"le=\"([^\"]+)\"", m[2])[1]
        buckets.append((float(le), float(m[3])))
    elif m[1] == "sum":
        total = float(m[3])
    else:
        count = float(m[3])
median = next((le for le, n in sorted(buckets) if n >= count / 2), float("nan"))
print("%.0f %.0f" % (total / count * 1e6 if count else float("nan"), median * 1e6))
')

# Serves the empty component (bench/empty-component: a fresh instance per request and nothing
# else, what every Wasm route pays at least) with the command given after the server's name,
# listening on $EMPTY_PORT; drives it as the reads are driven and stops it; leaves run_wrk's line
# in EMPTY_RESULT. On shop-host, then, when Wasmtime 48's own CLI is on the PATH, on `wasmtime
# serve` with the pooling options this host uses (4 MiB kept resident: KEEP_RESIDENT in
# host/runtime/src/engine.rs).
measure_empty() {
    local server=$1 pid
    shift
    "$@" >>"$WORK/empty-$server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready "http://127.0.0.1:$EMPTY_PORT/" "$(now_ms)" >/dev/null
    log "GET / of the empty component on $server (${SECONDS_PER_RUN}s, $CONNECTIONS connections)"
    EMPTY_RESULT=$(run_wrk "$CONNECTIONS" "http://127.0.0.1:$EMPTY_PORT/")
    kill "$pid"
}
EMPTY_PORT=$(free_port)
measure_empty shop-host env RUST_LOG=warn "$BIN/shop-host" up -f bench/empty-component/spin.toml \
    --listen "127.0.0.1:$EMPTY_PORT" --state-dir "$WORK/empty-state"
read -r E_RPS E_P50 E_P99 E_BAD <<<"$EMPTY_RESULT"
if wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.'; then
    EMPTY_PORT=$(free_port)
    measure_empty wasmtime-serve wasmtime serve --addr "127.0.0.1:$EMPTY_PORT" -S cli=y \
        -O pooling-allocator=y,pooling-memory-keep-resident=4194304,pooling-table-keep-resident=4194304 \
        target/wasm32-wasip2/release/empty_component.wasm
    read -r EW_RPS EW_P50 EW_P99 EW_BAD <<<"$EMPTY_RESULT"
    EMPTY_WASMTIME="$EW_RPS req/s, p50 $EW_P50 ms, p99 $EW_P99 ms, non-2xx $EW_BAD"
else
    EMPTY_WASMTIME="not measured: no wasmtime 48 on the PATH (cargo install --locked wasmtime-cli --version 48.0.8)"
fi

# Starts the native baseline with connection mode $1 (see bench/native-baseline); sets NBASE.
start_native() {
    local port
    port=$(free_port)
    NBASE="http://127.0.0.1:$port"
    "$BIN/native-baseline" "127.0.0.1:$port" "$WORK/stores/inventory.db" "$1" &
    NATIVE_PID=$!
    PIDS+=("$NATIVE_PID")
    wait_ready "$NBASE/inventory/health" "$(now_ms)" >/dev/null
}
start_native kept
log "GET /inventory/products/:sku on the native baseline (connection kept)"
read -r N_RPS N_P50 N_P99 N_BAD < <(run_wrk "$CONNECTIONS" "$NBASE/inventory/products/bench-read")
log "GET /inventory/health on the native baseline (${SECONDS_PER_RUN}s, $CONNECTIONS connections)"
read -r NF_RPS NF_P50 NF_P99 NF_BAD < <(run_wrk "$CONNECTIONS" "$NBASE/inventory/health")
log "GET /inventory/health on the native baseline, 1 connection"
read -r NH_RPS NH_P50 NH_P99 _ < <(run_wrk 1 "$NBASE/inventory/health")
kill "$NATIVE_PID"
start_native per-request
log "GET /inventory/products/:sku on the native baseline (connection per request)"
read -r NO_RPS NO_P50 NO_P99 NO_BAD < <(run_wrk "$CONNECTIONS" "$NBASE/inventory/products/bench-read")
kill "$NATIVE_PID"

# --- saga completion at a fixed offered rate ---
log "saga: $SAGA_RATE orders/s for ${SECONDS_PER_RUN}s, created -> confirmed"
read -r S_P50 S_P99 S_DONE S_PLACED < <(python3 bench/rate.py saga "$BASE" "$SAGA_RATE" "$SECONDS_PER_RUN" bench-order)

# Waits until no order is pending or reserved (the saga backlog of a load run has drained),
# up to DRAIN_LIMIT_S. The saga handles far fewer orders per second than POST /orders accepts
# (Spin's Redis trigger handles one message at a time per subscription), so a closed-loop run
# leaves minutes of work behind.
DRAIN_LIMIT_S=600
drain() {
    local deadline=$(( $(now_ms) + DRAIN_LIMIT_S * 1000 ))
    while (( $(now_ms) < deadline )); do
        local open=0
        for s in pending reserved; do
            open=$(( open + $(curl -sf "$BASE/orders?status=$s&limit=1" | jq '.orders | length') ))
        done
        (( open == 0 )) && break
        sleep 0.5
    done
    # Final orders still leave events for the other consumers (notifications, stock commits):
    # wait until the host has handled no Redis message for a whole second.
    wait_redis_quiet "$METRICS_PORT" "$deadline" && return 0
    log "saga backlog did not drain within $DRAIN_LIMIT_S s"
    return 1
}

# --- POST /orders: maximum throughput, then latency at half of it ---
log "POST /orders, closed loop"
read -r P_RPS P_P50 P_P99 P_BAD < <(run_wrk "$CONNECTIONS" -s bench/post_order.lua "$BASE/orders")
log "draining the saga backlog"
t0=$(now_ms)
BACKLOG=$(( P_RPS * SECONDS_PER_RUN ))
if drain; then
    DRAIN_MS=$(( $(now_ms) - t0 ))
    DRAINED="$(( DRAIN_MS / 1000 )) s: $(awk -v n="$BACKLOG" -v ms="$DRAIN_MS" 'BEGIN { printf "%.0f", n * 1000 / ms }') orders/s through the saga"
else
    DRAINED="not within $DRAIN_LIMIT_S s"
fi
HALF=$(( P_RPS / 2 ))
log "POST /orders at $HALF/s (half of the maximum)"
read -r H_P50 H_P99 H_OK H_SENT < <(run_rate "$HALF" "$BASE/orders" -m POST \
    -H 'content-type: application/json' \
    -d '{"customer_id":"bench","items":[{"sku":"bench-order","quantity":1}],"payment_token":"tok_visa"}')
kill "$SAMPLER"
LOAD_RSS=$(sort -n "$WORK/rss.txt" | tail -1)

# --- the table ---
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
diff_us() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (a-b)*1000 }'; }
cat <<TABLE

| measurement | value |
| --- | --- |
| GET /inventory/products/:sku, Wasm (c=$CONNECTIONS) | $W_RPS req/s, p50 $W_P50 ms, p99 $W_P99 ms, non-2xx $W_BAD |
| GET /inventory/products/:sku, native, connection kept (c=$CONNECTIONS) | $N_RPS req/s, p50 $N_P50 ms, p99 $N_P99 ms, non-2xx $N_BAD |
| Wasm / native read throughput (connection kept: like for like) | $(ratio "$W_RPS" "$N_RPS") |
| GET /inventory/health, Wasm, no store (c=$CONNECTIONS): ceiling of a Wasm route | $WF_RPS req/s, p50 $WF_P50 ms, p99 $WF_P99 ms, non-2xx $WF_BAD |
| Wasm ceiling / native read throughput | $(ratio "$WF_RPS" "$N_RPS") |
| GET / of the empty component on shop-host (c=$CONNECTIONS): the most any Wasm route can reach | $E_RPS req/s, p50 $E_P50 ms, p99 $E_P99 ms, non-2xx $E_BAD |
| the same on wasmtime serve 48, pooling as this host (c=$CONNECTIONS) | $EMPTY_WASMTIME |
| GET /inventory/health, native, no work (c=$CONNECTIONS) | $NF_RPS req/s, p50 $NF_P50 ms, p99 $NF_P99 ms, non-2xx $NF_BAD |
| empty component on shop-host / native read; / native health | $(ratio "$E_RPS" "$N_RPS"); $(ratio "$E_RPS" "$NF_RPS") |
| GET /inventory/products/:sku, native, connection per request (c=$CONNECTIONS) | $NO_RPS req/s, p50 $NO_P50 ms, p99 $NO_P99 ms, non-2xx $NO_BAD |
| Wasm / native read throughput (native opening per request) | $(ratio "$W_RPS" "$NO_RPS") |
| GET /inventory/health c=1, Wasm vs native | $WH_RPS vs $NH_RPS req/s; p50 $WH_P50 vs $NH_P50 ms |
| per-request Wasm overhead (health p50 Wasm - native: instantiate + run) | $(diff_us "$WH_P50" "$NH_P50") µs |
| instantiation per request (host histogram) | mean $I_MEAN µs, median ≤ $I_MEDIAN µs |
| POST /orders max (c=$CONNECTIONS) | $P_RPS req/s, p50 $P_P50 ms, p99 $P_P99 ms, non-2xx $P_BAD |
| POST /orders at $HALF/s (half max), fixed rate | p50 $H_P50 ms, p99 $H_P99 ms ($H_OK/$H_SENT created) |
| saga backlog of the closed-loop POST run (about $BACKLOG orders) drained in | $DRAINED |
| saga created -> confirmed at $SAGA_RATE orders/s | p50 $S_P50 ms, p99 $S_P99 ms ($S_DONE confirmed / $S_PLACED placed) |
| host RSS idle / max under load | $IDLE_RSS MiB / $LOAD_RSS MiB |
| start-up to first served request, cold / warm cache | $COLD_MS ms / $WARM_MS ms |
TABLE
