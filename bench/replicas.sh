#!/usr/bin/env bash
# Replicas: 3 shop-host replicas sharing one set of stores and one Redis behind haproxy, 1,000
# orders placed while one replica is killed (-9) and restarted; checks every saga invariant and
# reports the work each replica does per event. Not part of CI.
#
# What it runs, all on loopback ports picked free, under one temp dir removed at exit:
#   redis-server (no persistence); shop-host x3, every one with the same --runtime-config-file,
#   whose stores (SQLite and key-value files) all live in $WORK/stores, so the replicas share
#   every database as SpinKube replicas share their libSQL/Redis stores; each has its own
#   --state-dir (logs) with one shared compile cache, and its own --metrics-listen.
#   With REPLICA_SQL_STORE=postgres, orders, inventory and billing keep their SQL stores in
#   PostgreSQL instead (sql_store=postgres): three fresh, uniquely named databases, one per
#   function, made before the replicas start on the PostgreSQL that answers on 127.0.0.1:5432
#   (user postgres, trust), or when none does on a private one started from
#   /usr/lib/postgresql/*/bin on a free port (as testkit's PostgresServer does), and dropped at
#   exit (the private server stopped); every replica gets the same <fn>_postgres_url, so the
#   three share the three databases as SpinKube replicas share one PostgreSQL server. The
#   key-value stores stay in $WORK/stores. The checks read everything through the app's HTTP
#   API either way.
#   haproxy (apt, run in the foreground as a child, not the system service): one frontend,
#   round-robin to the 3 replicas, health-checked on /.well-known/spin/health so that a killed
#   replica is taken out and a restarted one put back. app_base_url, payment_provider_url and
#   the outbound origins point at haproxy: consumers read the feeds, billing charges and
#   notifications call out through the balancer, as in a cluster.
# Then: stocks one product, places REPLICA_ORDERS orders at REPLICA_RATE per second, so that the
# kill and the restart both fall while orders arrive (bench/replicas.py place: threads,
# Idempotency-Key per order, an order that met a connection error or a 5xx is sent again with
# its key, so an order the dead replica created is replayed, not doubled; every 10th pays with
# tok_decline so the compensation path runs too). After REPLICA_KILL_AT accepted orders it
# kills one replica with SIGKILL, and restarts it REPLICA_DOWN_SECS later. All along it calls
# each consumer's POST /<fn>/sweep every 10 s, as the deployment's CronJob does.
# Then it waits (bounded) for every order to be final and checks: every order final; tok_visa
# orders confirmed, tok_decline ones cancelled; stock reserved == 0 and available == initial -
# confirmed units; each confirmed order's payment captured for total_cents (and the provider's
# charge too); a cancelled one holds no capture; exactly one notification per order; no dead
# letter at any consumer; GET /notifications?customer_id= lists each of the customer's
# notifications once; with REPLICA_WEBHOOK=1 (default) notification_webhook_url is a counting
# receiver behind haproxy (/hook/), and each notification reaches it once. Two deliveries with
# the same trace id are replicas that applied the same event at once; a second one under another
# trace is a sweep's redelivery, expected (at least once, by design: counted, not failed) only
# when the first was made in the seconds before the kill, whose replica may have died between
# the call and recording it. (0: no webhook, notifications are recorded as sent.) It exits non-zero when one fails.
#
# Work per event with N replicas. Spin's Redis trigger (and this host) subscribe every replica
# to every channel: each copy of an event, published on shop.<source>.<consumer>.<p> for a
# consumer that takes its type (docs/adr/0010), is received by all N replicas of that consumer
# (PUBLISH returns N), and each one runs the consumer for it.
# The inbox (last applied seq per stream, in the shared database) lets the first one apply it
# and makes the other N-1 a duplicate: one indexed read and a log line each. So per event and
# consumer expect "messages handled" ~1.00 on each replica that was up all along (less on the
# killed one: it missed what was published while it was down), ~N in all, and "duplicates"
# ~N-1 in all. Under backlog a message carries a batch of a stream's events (docs/adr/0012),
# so messages per event fall below 1 on each replica while duplicates per event stay ~N-1. Replicas add availability, not throughput (docs/adr/0006, Consequences).
# Duplicates are counted from the consumers' log lines (shop_host_events_duplicated_total), so
# they also include events met again by a sweep or a gap fill (a replica that receives seq n+2
# before n+1 reads n+1 from the feed and applies both in one message; n+1's own message is then
# a duplicate everywhere). "Replicas that receive each event" counts one that applies it plus
# the duplicates: a little more than the replicas that were up when gap fills met events
# again, and less than N when replicas that received the same message at the same instant both
# found it next and both applied it (notifications: its key-value inbox is read, then written,
# with no transaction; with the webhook on, that is a second delivery, which the webhook check
# reports).
# The killed replica's counters die with it: it is scraped just before the kill and its two
# lives are added.
#
# Knobs: REPLICA_ORDERS (1000), REPLICA_RATE (50 orders/s; 0 as fast as the client goes),
# REPLICA_CONCURRENCY (8 client threads), REPLICA_KILL_AT (30% of the orders),
# REPLICA_DOWN_SECS (5), REPLICA_KILL (which replica: 2), REPLICA_DECLINE_EVERY
# (10; 0 for none), REPLICA_SETTLE_SECS (600: the limit for every order to be final and the
# invariants to hold), BENCH_PROFILE (release; dev runs target/debug/shop-host),
# BENCH_SKIP_BUILD=1 (use the host and components already built), REPLICA_KEEP=1 (keep the temp
# dir and its logs), REPLICA_SQL_STORE (sqlite; postgres: the SQL stores in PostgreSQL, above;
# on a failure their contents are dumped with pg_dump next to the kept logs;
# REPLICA_POSTGRES_PRIVATE=1 starts the private PostgreSQL even where one answers on 5432).
set -euo pipefail

source "$(dirname "$0")/../scripts/lib.sh"
REPLICAS=3
ORDERS=${REPLICA_ORDERS:-1000}
CONCURRENCY=${REPLICA_CONCURRENCY:-8}
RATE=${REPLICA_RATE:-50}
KILL_AT=${REPLICA_KILL_AT:-$(( ORDERS * 3 / 10 ))}
DOWN_SECS=${REPLICA_DOWN_SECS:-5}
VICTIM=${REPLICA_KILL:-2}
DECLINE_EVERY=${REPLICA_DECLINE_EVERY:-10}
SETTLE_SECS=${REPLICA_SETTLE_SECS:-600}
WEBHOOK=${REPLICA_WEBHOOK:-1}
SQL_STORE=${REPLICA_SQL_STORE:-sqlite}
SQL_FUNCTIONS=(orders inventory billing)
SWEEP_EVERY=10
ADMIN_TOKEN=replicas-admin-token
PROVIDER_KEY=bench-provider-key
SKU=replica-sku
PRICE=1250
INITIAL=$(( ORDERS * 3 + 100 )) # at most 3 units an order, and retried orders stay the same
PROFILE=${BENCH_PROFILE:-release}
case "$PROFILE" in
    release) BIN=target/release; PROFILE_FLAG=--release ;;
    dev) BIN=target/debug; PROFILE_FLAG= ;;
    *) echo "BENCH_PROFILE must be release or dev" >&2; exit 1 ;;
esac
(( VICTIM >= 1 && VICTIM <= REPLICAS )) || { echo "REPLICA_KILL must be 1..$REPLICAS" >&2; exit 1; }
[[ $SQL_STORE == sqlite || $SQL_STORE == postgres ]] ||
    { echo "REPLICA_SQL_STORE must be sqlite or postgres" >&2; exit 1; }

log() { printf '[replicas %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

ensure_wasm_target
ensure_build_tools
ensure_redis_installed
ensure_apt_package redis-cli redis-tools
ensure_apt_package haproxy haproxy
ensure_apt_package curl curl
ensure_apt_package jq jq
ensure_apt_package python3 python3
[[ $SQL_STORE == postgres ]] && ensure_postgres_installed

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
    log "building shop-host ($PROFILE) and the components (release)"
    cargo build $PROFILE_FLAG -q -p shop-host
    lines_of components component_packages functions/*
    build_components "${components[@]}"
fi
[[ -x $BIN/shop-host ]] || { log "$BIN/shop-host is missing (unset BENCH_SKIP_BUILD)"; exit 1; }

WORK=$(mktemp -d -t shop-replicas.XXXXXX)
declare -A REPLICA_PID=() PG_DB=()
PIDS=()
PG_PORT= PG_PRIVATE= PG_BIN=
cleanup() {
    local status=$?
    touch "$WORK/stop"
    local pid
    for pid in "${REPLICA_PID[@]}" "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${REPLICA_PID[@]}" "${PIDS[@]}"; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
        (( alive )) || break
        sleep 0.2
    done
    for pid in "${REPLICA_PID[@]}" "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # The PostgreSQL databases (WITH (FORCE): sessions a replica's pool still holds end too), then
    # the private server, if one was started. After a failure their contents are dumped first,
    # next to the logs that are kept (now that the replicas no longer hold the connections).
    local db fn kept=
    if [[ -n ${REPLICA_KEEP:-} ]]; then kept=$WORK; elif [[ -d ${WORK}-failed ]]; then kept=${WORK}-failed; fi
    if (( status != 0 )) && [[ -n $kept ]]; then
        for fn in "${!PG_DB[@]}"; do
            pg_dump -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "${PG_DB[$fn]}" -f "$kept/stores/$fn.postgres.sql" ||
                log "pg_dump of ${PG_DB[$fn]} failed"
        done
    fi
    for db in "${PG_DB[@]}"; do
        pg_sql postgres "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null ||
            log "could not drop PostgreSQL database $db"
    done
    if [[ -n $PG_PRIVATE ]]; then
        pg_run "$PG_BIN/pg_ctl" -D "$PG_PRIVATE/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_PRIVATE"
    fi
    if [[ -n ${REPLICA_KEEP:-} ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_s() { date +%s; }

# psql on database DB of the PostgreSQL in use (PG_PORT), stopping at the first error; SQL...
# as -c arguments, unaligned tuples-only output.
pg_sql() {
    local db=$1
    shift
    local args=() sql
    for sql in "$@"; do args+=(-c "$sql"); done
    psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" "${args[@]}" </dev/null
}
# Runs a PostgreSQL server program as the postgres user when run as root (it refuses root).
pg_run() {
    if (( $(id -u) == 0 )); then runuser -u postgres -- "$@" </dev/null; else "$@" </dev/null; fi
}

# Polls until CMD succeeds, at most LIMIT seconds (every 0.2 s); fails with MESSAGE.
wait_for() {
    local limit=$1 message=$2
    shift 2
    local deadline=$(( $(now_s) + limit ))
    until "$@" >/dev/null 2>&1; do
        if (( $(now_s) > deadline )); then log "timed out after ${limit}s: $message"; return 1; fi
        sleep 0.2
    done
}

# --- redis ---
REDIS_PORT=$(free_port)
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" \
    >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
REDIS=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
wait_for 20 "redis-server on $REDIS_PORT" redis_answers 127.0.0.1 "$REDIS_PORT"

# --- PostgreSQL (REPLICA_SQL_STORE=postgres): one fresh database per SQL function ---
SQL_VARIABLES=()
PG_VERSION=
if [[ $SQL_STORE == postgres ]]; then
    PG_PORT=5432
    if [[ ${REPLICA_POSTGRES_PRIVATE:-} == 1 ]] || ! pg_sql postgres 'SELECT 1' >/dev/null 2>&1; then
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
        PG_PORT=$(free_port)
        PG_PRIVATE=$(mktemp -d -t shop-replicas-pg.XXXXXX)
        (( $(id -u) == 0 )) && chown -R postgres:postgres "$PG_PRIVATE"
        log "starting a private PostgreSQL ($PG_BIN) on $PG_PORT"
        pg_run "$PG_BIN/initdb" -D "$PG_PRIVATE/data" -U postgres --auth=trust --no-sync >/dev/null
        pg_run "$PG_BIN/pg_ctl" -D "$PG_PRIVATE/data" -l "$PG_PRIVATE/log" -w start \
            -o "-p $PG_PORT -k $PG_PRIVATE -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null
        wait_for 30 "the private PostgreSQL on $PG_PORT" pg_sql postgres 'SELECT 1'
    fi
    PG_VERSION=$(pg_sql postgres 'SHOW server_version' | awk '{ print $1 }')
    SQL_VARIABLES=(--variable sql_store=postgres --variable "postgres_origin=postgres://127.0.0.1:$PG_PORT")
    password=${PGPASSWORD:+ password=$PGPASSWORD}
    stamp=$(now_s)
    for fn in "${SQL_FUNCTIONS[@]}"; do
        db="shop_replicas_$$_${stamp}_$fn"
        pg_sql postgres "CREATE DATABASE $db" >/dev/null
        PG_DB[$fn]=$db
        SQL_VARIABLES+=(--variable "${fn}_postgres_url=host=127.0.0.1 port=$PG_PORT user=postgres dbname=$db sslmode=disable$password")
    done
    log "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT${PG_PRIVATE:+ (private)}: databases ${PG_DB[*]}"
fi

# --- one runtime config for every replica: every store (and the default ones) in $WORK/stores ---
mkdir -p "$WORK/stores" "$WORK/cache"
{
    for table in key_value_store sqlite_database; do
        file=$([[ $table == key_value_store ]] && echo default.db || echo default_sqlite.db)
        printf '[%s.default]\ntype = "spin"\npath = "%s"\n\n' "$table" "$WORK/stores/$file"
    done
    sed -E "s#^path = \".*/([^/\"]+)\"#path = \"$WORK/stores/\\1\"#" runtime-config.toml
} >"$WORK/runtime-config.toml"

# --- ports and haproxy's config ---
LB_PORT=$(free_port)
LB="http://127.0.0.1:$LB_PORT"
declare -A PORT=() METRICS=()
for r in $(seq "$REPLICAS"); do PORT[$r]=$(free_port); METRICS[$r]=$(free_port); done
STATS_PORT=$(free_port)
HOOK_PORT=$(free_port)
{
    cat <<CFG
global
    maxconn 4096
    log stderr format raw local0 notice

defaults
    mode http
    log global
    option httplog
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 90s
    timeout server 90s
    timeout http-keep-alive 10s
    default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2

frontend shop
    bind 127.0.0.1:$LB_PORT
    use_backend hook if { path_beg /hook/ }
    default_backend replicas

backend hook
    server hook 127.0.0.1:$HOOK_PORT

backend replicas
    balance roundrobin
    option httpchk GET /.well-known/spin/health
    http-check expect status 200
CFG
    for r in $(seq "$REPLICAS"); do
        echo "    server r$r 127.0.0.1:${PORT[$r]} check"
    done
    cat <<CFG

frontend stats
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /stats
CFG
} >"$WORK/haproxy.cfg"
haproxy -c -q -f "$WORK/haproxy.cfg"

# The notification webhook: a receiver behind the same balancer that counts deliveries per
# notification, so "exactly one notification" is also checked where the customer sees it.
HOOK_VARIABLE=()
HOOK_COUNTS=
if [[ $WEBHOOK != 0 ]]; then
    python3 bench/replicas.py webhook "$HOOK_PORT" 2>"$WORK/webhook.log" &
    PIDS+=($!)
    HOOK_VARIABLE=(--variable "notification_webhook_url=$LB/hook/notify")
    HOOK_COUNTS="$LB/hook/counts"
    wait_for 20 "the webhook receiver" curl -sf "http://127.0.0.1:$HOOK_PORT/"
fi

start_replica() {
    local r=$1
    mkdir -p "$WORK/state/r$r"
    [[ -e $WORK/state/r$r/cache ]] || ln -s "$WORK/cache" "$WORK/state/r$r/cache"
    SPIN_VARIABLE_ADMIN_TOKEN=$ADMIN_TOKEN SPIN_VARIABLE_INTERNAL_KEY=bench-internal-key \
    SPIN_VARIABLE_PAYMENT_PROVIDER_KEY=$PROVIDER_KEY RUST_LOG=${REPLICA_RUST_LOG:-warn} "$BIN/shop-host" up \
        -f spin.toml --listen "127.0.0.1:${PORT[$r]}" --state-dir "$WORK/state/r$r" \
        --runtime-config-file "$WORK/runtime-config.toml" \
        --metrics-listen "127.0.0.1:${METRICS[$r]}" \
        --variable "redis_address=redis://127.0.0.1:$REDIS_PORT" \
        --variable "app_base_url=$LB" \
        --variable "payment_provider_url=$LB/payment-sim" \
        --variable "payment_provider_origin=$LB" \
        --variable "notification_webhook_origin=$LB" \
        "${HOOK_VARIABLE[@]}" "${SQL_VARIABLES[@]}" \
        2>>"$WORK/replica-$r.log" &
    REPLICA_PID[$r]=$!
    log "replica r$r: pid ${REPLICA_PID[$r]}, 127.0.0.1:${PORT[$r]}, metrics 127.0.0.1:${METRICS[$r]}"
}

# Subscriptions one replica holds per channel (from spin.toml); "channel count" lines.
python3 bench/replicas.py subscribed spin.toml >"$WORK/subscriptions.txt"
# True when every channel has exactly N replicas' subscriptions.
subscribed() {
    local n=$1 channel count actual
    while read -r channel count; do
        actual=$("${REDIS[@]}" pubsub numsub "$channel" | sed -n 2p)
        [[ $actual == $(( count * n )) ]] || return 1
    done <"$WORK/subscriptions.txt"
}
healthy() { curl -sf -o /dev/null "http://127.0.0.1:${PORT[$1]}/.well-known/spin/health"; }
# haproxy's view of server rN: UP, DOWN, ...
lb_state() {
    curl -sf "http://127.0.0.1:$STATS_PORT/stats;csv" | awk -F, -v s="r$1" '$1 == "replicas" && $2 == s { print $18 }'
}
lb_up() { [[ $(lb_state "$1") == UP* ]]; }

# The first replica compiles the components into the shared cache; the others then start warm.
start_replica 1
wait_for 300 "replica r1 healthy" healthy 1
for r in $(seq 2 "$REPLICAS"); do start_replica "$r"; done
for r in $(seq "$REPLICAS"); do wait_for 120 "replica r$r healthy" healthy "$r"; done
wait_for 60 "every replica subscribed to every channel" subscribed "$REPLICAS"

haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
for r in $(seq "$REPLICAS"); do wait_for 30 "haproxy sees r$r up" lb_up "$r"; done
log "haproxy on $LB, round-robin over $REPLICAS replicas"

# --- the CronJob: every consumer's sweep every SWEEP_EVERY s, through the balancer ---
sweeper() {
    while [[ ! -e $WORK/stop ]]; do
        for fn in orders inventory billing notifications; do
            printf '%s %s ' "$(date -u +%T)" "$fn"
            curl -s -m 60 -X POST "$LB/$fn/sweep" -H "authorization: Bearer $ADMIN_TOKEN" -w ' %{http_code}\n' || echo
        done
        for _ in $(seq $(( SWEEP_EVERY * 5 ))); do [[ -e $WORK/stop ]] && return; sleep 0.2; done
    done
}
sweeper >>"$WORK/sweeps.log" 2>&1 &
PIDS+=($!)

# --- stock and orders ---
curl -sf -o /dev/null -X PUT "$LB/inventory/products/$SKU" \
    -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
    -d "{\"name\":\"Replica mug\",\"price_cents\":$PRICE,\"available\":$INITIAL}"
log "stocked $SKU: $INITIAL units; placing $ORDERS orders at $RATE/s ($CONCURRENCY threads), r$VICTIM killed at $KILL_AT accepted"

metrics_of() { curl -sf -m 10 "http://127.0.0.1:${METRICS[$1]}/metrics"; }

T0=$(now_s)
python3 bench/replicas.py place "$LB" "$ORDERS" "$RATE" "$CONCURRENCY" "$SKU" "$DECLINE_EVERY" \
    "replicas-$$-$T0" "$WORK/progress" "$WORK/orders.json" >"$WORK/place.json" 2>"$WORK/place.log" &
CLIENT=$!
PIDS+=("$CLIENT")

accepted() { cat "$WORK/progress" 2>/dev/null || echo 0; }
KILLED_AT= KILL_EPOCH= RESTARTED_AT= BACK_UP_S= KILL_NOTE="not killed (the client finished first)"
place_deadline=$(( T0 + SETTLE_SECS ))
while kill -0 "$CLIENT" 2>/dev/null; do
    if [[ -z $KILLED_AT ]] && (( $(accepted) >= KILL_AT )); then
        metrics_of "$VICTIM" >"$WORK/metrics-r$VICTIM-life1.txt" || true
        KILL_EPOCH=$(date +%s.%N)
        kill -9 "${REPLICA_PID[$VICTIM]}"
        wait "${REPLICA_PID[$VICTIM]}" 2>/dev/null || true
        KILLED_AT=$(accepted)
        log "killed r$VICTIM (SIGKILL) at $KILLED_AT accepted orders"
        sleep "$DOWN_SECS"
        log "haproxy saw r$VICTIM as: $(lb_state "$VICTIM")"
        RESTARTED_AT=$(accepted)
        t_restart=$(date +%s%N)
        start_replica "$VICTIM"
        wait_for 120 "r$VICTIM healthy again" healthy "$VICTIM"
        wait_for 60 "r$VICTIM subscribed again" subscribed "$REPLICAS"
        wait_for 30 "haproxy puts r$VICTIM back" lb_up "$VICTIM"
        BACK_UP_S=$(awk -v a="$t_restart" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
        KILL_NOTE="r$VICTIM SIGKILLed at $KILLED_AT accepted, restarted ${DOWN_SECS}s later at $RESTARTED_AT, back in haproxy ${BACK_UP_S}s after restart"
        log "$KILL_NOTE"
    fi
    if (( $(now_s) > place_deadline )); then log "placing orders took over ${SETTLE_SECS}s"; exit 1; fi
    sleep 0.1
done
wait "$CLIENT" || { log "the client failed:"; tail -20 "$WORK/place.log" >&2; exit 1; }
PLACE_S=$(( $(now_s) - T0 ))
cat "$WORK/place.log" >&2
log "placed: $(cat "$WORK/place.json")"

# --- settle and check ---
log "waiting for every order to be final and the invariants to hold (at most ${SETTLE_SECS}s)"
T1=$(now_s)
python3 bench/replicas.py check "$LB" "$WORK/orders.json" "$SKU" "$INITIAL" "$ADMIN_TOKEN" "$PROVIDER_KEY" "$SETTLE_SECS" \
    "$HOOK_COUNTS" "$KILL_EPOCH" >"$WORK/check.json"
CHECK_S=$(( $(now_s) - T1 ))

# Quiet: no replica handled a Redis message for 2 s (at most 60 s), then count and scrape.
handled_all() {
    local r
    for r in $(seq "$REPLICAS"); do metrics_of "$r"; done |
        awk '/^shop_host_redis_messages_total/ { n += $NF } END { printf "%d\n", n }'
}
quiet_deadline=$(( $(now_s) + 60 ))
before=$(handled_all)
while (( $(now_s) < quiet_deadline )); do
    sleep 2
    after=$(handled_all)
    [[ $after == "$before" ]] && break
    before=$after
done
python3 bench/replicas.py events "$LB" "$ADMIN_TOKEN" >"$WORK/events.json"
for r in $(seq "$REPLICAS"); do metrics_of "$r" >"$WORK/metrics-r$r-final.txt"; done
python3 - "$WORK" "$REPLICAS" "$VICTIM" >"$WORK/metrics.json" <<'PY'
import json, os, sys
work, n, victim = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = {}
for r in range(1, n + 1):
    files = [f"metrics-r{r}-life1.txt", f"metrics-r{r}-final.txt"]
    out[f"r{r}" + (" (killed)" if str(r) == victim else "")] = [
        open(os.path.join(work, f)).read() for f in files if os.path.exists(os.path.join(work, f))]
json.dump(out, sys.stdout)
PY
REPORT=$(python3 bench/replicas.py report "$WORK/metrics.json" "$WORK/events.json")

# --- the table ---
read -r CONFIRMED CANCELLED AVAILABLE RESERVED FINAL_S < <(jq -r \
    '"\(.confirmed) \(.cancelled) \(.product.available) \(.product.reserved) \(.final_after_s)"' "$WORK/check.json")
VIOLATIONS=$(jq '[.order_violations[]] | length' "$WORK/check.json")
STOCK_BAD=$(jq '.stock_violations | length' "$WORK/check.json")
NOTES_BAD=$(jq '.notification_violations | length' "$WORK/check.json")
HOOK_DOUBLED=$(jq '.webhook_doubled | length' "$WORK/check.json")
LETTERS=$(jq '[.dead_letters[] | length] | add // 0' "$WORK/check.json")
jqp() { jq -r "$1" "$WORK/place.json"; }
if [[ $SQL_STORE == postgres ]]; then
    STORES="SQL stores in PostgreSQL $PG_VERSION (a database per function, shared), key-value stores shared in one directory"
else
    STORES="stores shared in one directory"
fi
cat <<TABLE

| measurement | value |
| --- | --- |
| replicas | $REPLICAS shop-host ($PROFILE) behind haproxy $(haproxy -v | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p'), one Redis, $STORES |
| orders sent / accepted (201) / distinct ids | $ORDERS / $(jqp .accepted) / $(jqp .distinct_ids) |
| client retries (connection errors, 5xx) / replayed by Idempotency-Key / refused / gave up | $(jqp .retries) ($(jqp .conn_errors), $(jqp .http_5xx)) / $(jqp .replayed) / $(jqp .refused) / $(jqp .gave_up) |
| kill | $KILL_NOTE |
| placing took | ${PLACE_S}s (offered $RATE orders/s, $CONCURRENCY threads) |
| every order final after placing | ${FINAL_S}s (invariants checked by ${CHECK_S}s) |
| confirmed / cancelled | $CONFIRMED / $CANCELLED (cancel reasons: $(jq -r '.cancel_reasons | join(", ")' "$WORK/check.json")) |
| stock: initial / available / reserved / confirmed units | $INITIAL / $AVAILABLE / $RESERVED / $(jq .confirmed_units "$WORK/check.json") |
| events per source (orders, inventory, billing) | $(jq -r '"\(.orders), \(.inventory), \(.billing)"' "$WORK/events.json") |
| orders with a broken invariant | $VIOLATIONS |
| stock invariants broken | $STOCK_BAD |
| notification lists / webhook deliveries broken | $NOTES_BAD |
| webhook: calls in all / orders notified more than once (violations) / redelivered by a sweep after the kill cut a delivery | $(jq -r '.webhook_deliveries // "no webhook"' "$WORK/check.json") / $HOOK_DOUBLED / $(jq '.webhook_redelivered | length' "$WORK/check.json") |
| dead letters | $LETTERS |

$REPORT
TABLE

if [[ $(jq '.webhook_redelivered | length' "$WORK/check.json") != 0 ]]; then
    log "redelivered by a sweep after the kill (deliveries as [unix time, trace id]), e.g.: $(jq -c '.webhook_redelivered | to_entries[:2] | from_entries' "$WORK/check.json")"
fi
FAILED=0
if (( VIOLATIONS + STOCK_BAD + NOTES_BAD + LETTERS > 0 )) || [[ $(jqp .accepted) != "$ORDERS" ]]; then
    FAILED=1
    log "INVARIANTS BROKEN:"
    jq -r '.stock_violations[], .notification_violations[]' "$WORK/check.json" >&2
    jq -r '.order_violations | to_entries[:20][] | .value[]' "$WORK/check.json" >&2
    jq -c '.dead_letters | to_entries[] | {consumer: .key, letters: (.value[:5])}' "$WORK/check.json" >&2
    # Who delivered a notification twice: each replica's log lines of it.
    for id in $(jq -r '.webhook_doubled | keys[:3][]' "$WORK/check.json"); do
        log "order $id, webhook deliveries [unix time, trace id]: $(jq -c --arg id "$id" '.webhook_doubled[$id]' "$WORK/check.json"); notifications' lines in the replicas' logs:"
        for r in $(seq "$REPLICAS"); do
            jq -c --arg id "$id" --arg r "r$r" 'select(.component == "notifications" and .fields.order_id == $id)
                | {replica: $r, at: .timestamp, trigger, route, trace: .trace_id, msg: .fields.msg}' "$WORK/replica-$r.log" >&2 || true
        done
    done
    if [[ -z ${REPLICA_KEEP:-} ]] && cp -r "$WORK" "${WORK}-failed" 2>/dev/null; then
        rm -rf "${WORK}-failed/cache"
        log "logs and stores kept in ${WORK}-failed"
    fi
fi
exit "$FAILED"
