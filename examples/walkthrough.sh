#!/usr/bin/env bash
# Takes one order through the whole saga against any deployment of the shop and shows each step:
# create a product, place an order (with an Idempotency-Key, sent twice), wait for the order to
# end confirmed or cancelled, then show its payment, its notification and the product's stock.
#
#   examples/walkthrough.sh [BASE_URL] [ADMIN_TOKEN]
#
# Settings (arguments win over the environment):
#   BASE_URL       where the app listens            default http://127.0.0.1:3000
#   ADMIN_TOKEN    the app's admin_token variable   default dev-admin-token
#   SKU            product to create                default walk-<time>-<random> (fresh every run)
#   STOCK          units put on sale                default 10
#   PRICE_CENTS    unit price                       default 1250
#   QUANTITY       units ordered                    default 2
#   PAYMENT_TOKEN  tok_visa pays, tok_decline is declined   default tok_visa
#   TIMEOUT        seconds to wait for each asynchronous step   default 30
#   FUNCTIONS      functions whose /<function>/health is checked first
#                  default "orders inventory billing notifications payment-sim"
#
# Needs bash, curl, and jq or python3. Exits non-zero with the reason on any unexpected answer.
set -euo pipefail

BASE_URL="${1:-${BASE_URL:-http://127.0.0.1:3000}}"
BASE_URL="${BASE_URL%/}"
ADMIN_TOKEN="${2:-${ADMIN_TOKEN:-dev-admin-token}}"
SKU="${SKU:-walk-$(date +%s)-$RANDOM}"
STOCK="${STOCK:-10}"
PRICE_CENTS="${PRICE_CENTS:-1250}"
QUANTITY="${QUANTITY:-2}"
PAYMENT_TOKEN="${PAYMENT_TOKEN:-tok_visa}"
TIMEOUT="${TIMEOUT:-30}"
CUSTOMER_ID="${CUSTOMER_ID:-cust-walkthrough}"
FUNCTIONS="${FUNCTIONS:-orders inventory billing notifications payment-sim}"

BODY_FILE="$(mktemp)"
trap 'rm -f "$BODY_FILE"' EXIT
STATUS=""
BODY=""

die() {
    printf '\nFAILED: %s\n' "$*" >&2
    exit 1
}

command -v curl >/dev/null || die "curl is required"
if command -v jq >/dev/null; then
    JSON_TOOL=jq
elif command -v python3 >/dev/null; then
    JSON_TOOL=python3
else
    die "jq or python3 is required to read JSON"
fi

# Prints one field of the JSON in $BODY, given as a dotted path (e.g. `id`, `error.code`,
# `notifications.length`); prints nothing when it is absent, null, or $BODY is not JSON.
field() {
    if [ "$JSON_TOOL" = jq ]; then
        local filter=".${1}"
        filter="${filter/%.length/ | length}"
        printf '%s' "$BODY" | jq -r "($filter) // empty" 2>/dev/null || true
    else
        printf '%s' "$BODY" | python3 -c '
import json, sys
try:
    value = json.load(sys.stdin)
except ValueError:
    sys.exit(0)
for key in sys.argv[1].split("."):
    if key == "length" and isinstance(value, list):
        value = len(value)
    elif isinstance(value, dict):
        value = value.get(key)
    else:
        value = None
if value is not None:
    print(value if not isinstance(value, bool) else str(value).lower())
' "$1" || true
    fi
}

pretty() {
    if [ "$JSON_TOOL" = jq ]; then
        printf '%s' "$BODY" | jq . 2>/dev/null || printf '%s\n' "$BODY"
    else
        printf '%s' "$BODY" | python3 -m json.tool 2>/dev/null || printf '%s\n' "$BODY"
    fi
}

step() {
    printf '\n== %s\n' "$*"
}

# call METHOD PATH EXPECTED [BODY] [HEADER...]: EXPECTED is a |-separated list of statuses.
# Leaves the answer in $STATUS and $BODY; dies on a transport error or an unexpected status.
call() {
    local method="$1" path="$2" expected="$3" body="${4:-}"
    shift 4 || shift $#
    local args=(-sS -X "$method" -o "$BODY_FILE" -w '%{http_code}' --max-time 20
        -H 'Accept: application/json')
    local header
    for header in "$@"; do
        args+=(-H "$header")
    done
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    printf -- '-> %s %s\n' "$method" "$path"
    STATUS="$(curl "${args[@]}" "$BASE_URL$path")" ||
        die "could not reach $BASE_URL$path (is the app running? set BASE_URL)"
    BODY="$(cat "$BODY_FILE")"
    printf '<- HTTP %s\n' "$STATUS"
    case "|$expected|" in
    *"|$STATUS|"*) ;;
    *)
        pretty >&2
        case "$STATUS" in
        401) die "$method $path answered 401: ADMIN_TOKEN does not match the app's admin_token" ;;
        *) die "$method $path answered $STATUS, expected $expected" ;;
        esac
        ;;
    esac
}

printf 'Shop walkthrough against %s (sku %s, %s x %s cents, payment %s)\n' \
    "$BASE_URL" "$SKU" "$QUANTITY" "$PRICE_CENTS" "$PAYMENT_TOKEN"

step "1. Every function is up"
for fn in $FUNCTIONS; do
    call GET "/$fn/health" 200
done

step "2. Put a product on sale (admin)"
call PUT "/inventory/products/$SKU" "200|201" \
    "{\"name\": \"Walkthrough widget\", \"price_cents\": $PRICE_CENTS, \"available\": $STOCK}" \
    "Authorization: Bearer $ADMIN_TOKEN"
pretty

step "3. Place an order with an Idempotency-Key"
IDEMPOTENCY_KEY="walkthrough-$(date +%s)-$RANDOM"
ORDER_BODY="{\"customer_id\": \"$CUSTOMER_ID\", \"items\": [{\"sku\": \"$SKU\", \"quantity\": $QUANTITY}], \"payment_token\": \"$PAYMENT_TOKEN\"}"
call POST /orders 201 "$ORDER_BODY" "Idempotency-Key: $IDEMPOTENCY_KEY"
pretty
ORDER_ID="$(field id)"
[ -n "$ORDER_ID" ] || die "the created order has no id"
printf 'order id: %s, status: %s\n' "$ORDER_ID" "$(field status)"

step "4. Send the same request again: the same key gives back the same order"
call POST /orders "200|201" "$ORDER_BODY" "Idempotency-Key: $IDEMPOTENCY_KEY"
REPLAY_ID="$(field id)"
[ "$REPLAY_ID" = "$ORDER_ID" ] || die "replay created order $REPLAY_ID instead of returning $ORDER_ID"
printf 'same order: %s\n' "$REPLAY_ID"

step "5. Wait (at most ${TIMEOUT}s) for the saga to confirm or cancel the order"
deadline=$((SECONDS + TIMEOUT))
last=""
while :; do
    call GET "/orders/$ORDER_ID" 200 >/dev/null
    ORDER_STATUS="$(field status)"
    if [ "$ORDER_STATUS" != "$last" ]; then
        printf '   status: %s\n' "$ORDER_STATUS"
        last="$ORDER_STATUS"
    fi
    case "$ORDER_STATUS" in
    confirmed | cancelled) break ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] ||
        die "order $ORDER_ID is still '$ORDER_STATUS' after ${TIMEOUT}s (are the Redis trigger and the sweep running?)"
    sleep 1
done
pretty
TOTAL_CENTS="$(field total_cents)"
if [ "$ORDER_STATUS" = cancelled ]; then
    printf 'cancelled, reason: %s\n' "$(field cancel_reason)"
fi

step "6. The payment"
if [ "$ORDER_STATUS" = confirmed ]; then
    call GET "/billing/payments/$ORDER_ID" 200
    pretty
    [ "$(field status)" = captured ] || die "order is confirmed but its payment is '$(field status)'"
    [ "$(field amount_cents)" = "$TOTAL_CENTS" ] ||
        die "payment of $(field amount_cents) cents does not match the order total of $TOTAL_CENTS"
else
    # A cancelled order may never have reached billing (out of stock), so 404 is fine here.
    call GET "/billing/payments/$ORDER_ID" "200|404"
    pretty
fi

step "7. The notification (waiting at most ${TIMEOUT}s for it to be recorded)"
deadline=$((SECONDS + TIMEOUT))
while :; do
    call GET "/notifications?order_id=$ORDER_ID" 200 >/dev/null
    count="$(field notifications.length)"
    [ "${count:-0}" -gt 0 ] && break
    [ "$SECONDS" -lt "$deadline" ] || die "no notification for order $ORDER_ID after ${TIMEOUT}s"
    sleep 1
done
pretty

step "8. The product's stock after the saga"
call GET "/inventory/products/$SKU" 200
pretty
printf 'available %s, reserved %s (started with %s available)\n' \
    "$(field available)" "$(field reserved)" "$STOCK"

printf '\nDone: order %s ended %s.\n' "$ORDER_ID" "$ORDER_STATUS"
