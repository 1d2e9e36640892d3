#!/usr/bin/env python3
"""The client side of bench/replicas.sh (standard library only). Subcommands:

  place BASE ORDERS RATE CONCURRENCY SKU DECLINE_EVERY RUN_ID PROGRESS OUT
      POST /orders ORDERS times through the balancer from CONCURRENCY threads, each order due
      at RATE per second (0: as fast as the threads go); every order has an Idempotency-Key,
      and one that got a connection error or a 5xx (the replica that served it was killed) is
      sent again with the same key and body (up to 20 times), so an order the dead replica had
      already created comes back as a replay instead of a second order. Every
      DECLINE_EVERY-th order pays with tok_decline (0: none). Writes the accepted count to
      PROGRESS as it goes and the orders (id, quantity, token, attempts) to OUT as JSON.
  check BASE ORDERS_JSON SKU INITIAL TOKEN PROVIDER_KEY SETTLE_S HOOK KILLED_AT
      Waits (at most SETTLE_S) until every order is final (the caller sweeps meanwhile), then
      checks the invariants until they hold or the limit passes; prints a JSON report on
      stdout, progress on stderr. TOKEN: the admin token (dead letters); PROVIDER_KEY: the
      payment_provider_key, which payment-sim asks of every call (its charges); HOOK: the
      webhook receiver's counts URL, or "" when no webhook is configured; KILLED_AT: when the
      replica was killed (unix time), or "".
  webhook PORT
      A notification webhook receiver on 127.0.0.1:PORT: answers every POST with 200 and
      records each delivery (time, trace id of its traceparent) per notification id; GET (any
      path) returns them as JSON.
  events BASE TOKEN
      Counts the events of each source's feed (paging with next_after; the feeds answer a
      consumer's feed token or the admin token TOKEN); prints JSON.
  report METRICS_JSON EVENTS_JSON
      The per-replica work-per-event table from scraped /metrics texts.
  subscribed MANIFEST
      Prints "channel count" per Redis channel: subscriptions one replica holds.
"""
import http.client
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

local = threading.local()


def subscriptions():
    """(source, consumer) pairs, read from spin.toml's Redis bindings of partition 0 (a unit
    test holds them to crates/shop-kit/src/subscriptions.rs)."""
    import tomllib
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    with open(os.path.join(root, "spin.toml"), "rb") as f:
        manifest = tomllib.load(f)
    pairs = []
    for t in manifest["trigger"]["redis"]:
        parts = t["channel"].split(".")  # shop.<source>.<consumer>.<partition>
        if parts[1] != "wake" and parts[3] == "0":
            pairs.append((parts[1], t["component"]))
    return pairs


SUBSCRIPTIONS = subscriptions()
CONSUMERS = ["orders", "inventory", "billing", "notifications"]
SOURCES = ["orders", "inventory", "billing"]


def log(*parts):
    print(f"[replicas {time.strftime('%H:%M:%S', time.gmtime())}]", *parts, file=sys.stderr, flush=True)


def connection(base):
    conn = getattr(local, "conn", None)
    if conn is None or getattr(local, "base", None) != base:
        u = urlparse(base)
        conn = local.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        local.base = base
    return conn


def request(base, method, path, body=None, headers=None):
    """One request on the thread's keep-alive connection: (status, headers, body bytes).
    Raises OSError / HTTPException when the connection fails (the caller decides to retry)."""
    conn = connection(base)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["content-type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    except (http.client.HTTPException, OSError):
        conn.close()
        local.conn = None
        raise


def get_json(base, path, token=None, tries=5):
    """GET with a few retries on connection errors and 5xx; (status, json or None)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    last = None
    for attempt in range(tries):
        try:
            status, _, data = request(base, "GET", path, headers=headers)
        except (http.client.HTTPException, OSError) as e:
            last = repr(e)
            time.sleep(0.2 * (attempt + 1))
            continue
        if status >= 500:
            last = f"{status} {data[:200]!r}"
            time.sleep(0.2 * (attempt + 1))
            continue
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None
    raise RuntimeError(f"GET {path}: {last}")


# --- place ---------------------------------------------------------------------------------


def place(base, total, rate, concurrency, sku, decline_every, run_id, progress_path, out_path):
    lock = threading.Lock()
    orders = []
    stats = {"accepted": 0, "replayed": 0, "retries": 0, "conn_errors": 0, "http_5xx": 0,
             "refused": 0, "gave_up": 0}
    started = time.time()
    first_due = time.perf_counter() + 0.05

    def write_progress():
        with open(progress_path + ".tmp", "w") as f:
            f.write(str(stats["accepted"]))
        import os
        os.replace(progress_path + ".tmp", progress_path)

    def one(i):
        if rate > 0:
            delay = first_due + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        quantity = i % 3 + 1
        token = "tok_decline" if decline_every and i % decline_every == decline_every - 1 else "tok_visa"
        body = {"customer_id": f"replica-{i % 50}", "items": [{"sku": sku, "quantity": quantity}],
                "payment_token": token}
        key = f"{run_id}-{i}"
        for attempt in range(20):
            try:
                status, headers, data = request(base, "POST", "/orders", body, {"idempotency-key": key})
            except (http.client.HTTPException, OSError):
                with lock:
                    stats["conn_errors"] += 1
                    stats["retries"] += 1
                time.sleep(0.25 * (attempt + 1))
                continue
            if status >= 500:
                with lock:
                    stats["http_5xx"] += 1
                    stats["retries"] += 1
                time.sleep(0.25 * (attempt + 1))
                continue
            if status != 201:
                with lock:
                    stats["refused"] += 1
                log(f"order {i}: {status} {data[:300]!r}")
                return
            order = json.loads(data)
            with lock:
                stats["accepted"] += 1
                if headers.get("idempotent-replayed") == "true":
                    stats["replayed"] += 1
                orders.append({"id": order["id"], "key": key, "quantity": quantity, "token": token,
                               "attempts": attempt + 1})
                write_progress()
            return
        with lock:
            stats["gave_up"] += 1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(total)))
    stats["seconds"] = round(time.time() - started, 1)
    ids = [o["id"] for o in orders]
    stats["distinct_ids"] = len(set(ids))
    with open(out_path, "w") as f:
        json.dump({"orders": orders, "stats": stats}, f)
    print(json.dumps(stats))


# --- check ---------------------------------------------------------------------------------

FINAL = ("confirmed", "cancelled")


def pmap(fn, items, workers=16):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def order_violations(base, order_id, expected_token, provider_key):
    """Broken invariants of one order (as text) and the order itself."""
    out = []
    status, order = get_json(base, f"/orders/{order_id}")
    if status != 200:
        return [f"{order_id}: GET /orders -> {status}"], None
    state = order["status"]
    if state not in FINAL:
        return [f"{order_id}: status {state}, not final"], order
    total = order.get("total_cents")
    _, payment = get_json(base, f"/billing/payments/{order_id}")
    charge_status, charge = get_json(base, f"/payment-sim/charges/{order_id}", provider_key)
    if charge_status in (401, 403):
        return [f"{order_id}: GET /payment-sim/charges -> {charge_status} (payment_provider_key?)"], order
    if payment is not None and "error" in payment:
        payment = None
    if charge is not None and "error" in charge:
        charge = None
    if state == "confirmed":
        lines = sum(i["quantity"] * (i.get("unit_price_cents") or 0) for i in order["items"])
        if total is None or total != lines:
            out.append(f"{order_id}: total {total} is not the sum of its lines {lines}")
        if not payment or payment.get("status") != "captured" or payment.get("amount_cents") != total:
            out.append(f"{order_id}: confirmed with total {total} but payment is {payment}")
        elif not charge or charge.get("status") != "captured" or charge.get("amount_cents") != total:
            out.append(f"{order_id}: confirmed, billing captured {total} but the provider has {charge}")
        if expected_token == "tok_decline":
            out.append(f"{order_id}: paid with tok_decline but confirmed")
    else:
        if not order.get("cancel_reason"):
            out.append(f"{order_id}: cancelled without a reason")
        if payment and payment.get("status") not in ("declined", "refunded"):
            out.append(f"{order_id}: cancelled but its payment is {payment}")
        if charge and charge.get("status") == "captured":
            out.append(f"{order_id}: cancelled but the provider still holds a capture: {charge}")
        if expected_token == "tok_visa":
            out.append(f"{order_id}: paid with tok_visa, stock was enough, but cancelled "
                       f"({order.get('cancel_reason')}): {order['history'][-1]}")
    kind = "order_confirmed" if state == "confirmed" else "order_cancelled"
    _, notes = get_json(base, f"/notifications?order_id={order_id}")
    notes = (notes or {}).get("notifications", [])
    if len(notes) != 1 or notes[0].get("kind") != kind:
        out.append(f"{order_id}: expected exactly one {kind} notification, got "
                   f"{[(n.get('kind'), n.get('status')) for n in notes]}")
    return out, order


def customer_violations(base, orders):
    """GET /notifications?customer_id= lists each final order's notification exactly once."""
    expected = {}
    for order in orders.values():
        if order and order.get("status") in FINAL:
            kind = "order_confirmed" if order["status"] == "confirmed" else "order_cancelled"
            expected.setdefault(order["customer_id"], []).append(f"{order['id']}:{kind}")
    out = []

    def one(customer):
        _, body = get_json(base, f"/notifications?customer_id={customer}")
        listed = [n["id"] for n in (body or {}).get("notifications", [])]
        errs = []
        missing = sorted(set(expected[customer]) - set(listed))
        doubled = sorted({i for i in listed if listed.count(i) > 1})
        if missing:
            errs.append(f"customer {customer}: {len(missing)} notifications missing from its list, e.g. {missing[:3]}")
        if doubled:
            errs.append(f"customer {customer}: listed more than once: {doubled[:3]}")
        return errs

    for errs in pmap(one, sorted(expected)):
        out.extend(errs)
    return out


def webhook_violations(hook, orders, killed_at):
    """Each final order's notification reached the webhook once. Returns (not yet delivered:
    may still change, so it holds the wait; violations, which never change: delivered again
    under the same trace id, i.e. the same event applied by two replicas at once, or under
    another trace (the sweep's redelivery) while nothing was killed; every delivery in all;
    the orders delivered twice in violation, with their deliveries; the orders redelivered
    after the kill). A redelivery by the sweep of a notification whose first delivery was
    made in the seconds before the kill (its replica died between the call and recording it)
    is at least once, as designed: reported, not a violation."""
    u = urlparse(hook)
    _, seen = get_json(f"{u.scheme}://{u.netloc}", u.path)
    seen = seen or {}
    missing, raced, swept, redelivered = [], {}, {}, {}
    for order in orders.values():
        if not order or order.get("status") not in FINAL:
            continue
        kind = "order_confirmed" if order["status"] == "confirmed" else "order_cancelled"
        deliveries = seen.get(f"{order['id']}:{kind}", [])
        traces = [trace for _, trace in deliveries]
        if not deliveries:
            missing.append(order["id"])
        elif len(set(traces)) < len(traces):
            raced[order["id"]] = deliveries
        elif len(deliveries) > 1:
            first = min(t for t, _ in deliveries)
            if killed_at and killed_at - KILL_WINDOW_S <= first <= killed_at:
                redelivered[order["id"]] = deliveries
            else:
                swept[order["id"]] = deliveries
    waiting, doubled = [], []
    if missing:
        waiting.append(f"webhook: {len(missing)} final orders' notification never delivered, e.g. {missing[:3]}")
    if raced:
        gaps = sorted(max(t for t, _ in d) - min(t for t, _ in d) for d in raced.values())
        doubled.append(f"webhook: {len(raced)} orders' notification delivered more than once for one "
                       f"event (same trace id: replicas applied it at once; deliveries "
                       f"{gaps[0]:.3f}-{gaps[-1]:.3f} s apart), e.g. {list(raced)[:5]}")
    if swept:
        gaps = sorted(max(t for t, _ in d) - min(t for t, _ in d) for d in swept.values())
        doubled.append(f"webhook: {len(swept)} orders' notification delivered again under another trace "
                       f"(a sweep's redelivery) though its first delivery was not cut by the kill; "
                       f"deliveries {gaps[0]:.3f}-{gaps[-1]:.3f} s apart, e.g. {list(swept)[:5]}")
    return waiting, doubled, sum(map(len, seen.values())), {**raced, **swept}, redelivered


# A delivery made this long before the kill may have been cut by it (the webhook's timeout).
KILL_WINDOW_S = 6.0


def check(base, orders_path, sku, initial, token, provider_key, settle_s, hook, killed_at):
    with open(orders_path) as f:
        placed = json.load(f)["orders"]
    tokens = {o["id"]: o["token"] for o in placed}
    ids = list(tokens)
    deadline = time.time() + settle_s
    started = time.time()

    # 1. every order final (polling GET /orders/<id>; replicas.sh sweeps every 10 s meanwhile,
    # as the deployment's CronJob does).
    open_ids = set(ids)
    while open_ids and time.time() < deadline:

        def status_of(order_id):
            try:
                return order_id, get_json(base, f"/orders/{order_id}")[1].get("status")
            except Exception:
                return order_id, None

        for order_id, status in pmap(status_of, list(open_ids)):
            if status in FINAL:
                open_ids.discard(order_id)
        if open_ids:
            log(f"{len(ids) - len(open_ids)}/{len(ids)} orders final")
            time.sleep(2)
    final_s = round(time.time() - started, 1)
    log(f"{len(ids) - len(open_ids)}/{len(ids)} orders final after {final_s} s")

    # 2. the invariants, re-checked (orders with violations only) until they hold or time's up:
    # a final order may still have its notification or stock commit on the way.
    violations = {}
    product = None
    to_check = ids
    dead_letters = {}
    while True:
        results = pmap(lambda i: (i, order_violations(base, i, tokens[i], provider_key)), to_check)
        for order_id, (errs, _) in results:
            if errs:
                violations[order_id] = errs
            else:
                violations.pop(order_id, None)
        orders = {}
        # Stock: reserved 0, available = initial - confirmed units (every order is re-read).
        confirmed_units = 0
        confirmed = cancelled = 0
        statuses = pmap(lambda i: (i, get_json(base, f"/orders/{i}")[1]), ids)
        for order_id, order in statuses:
            orders[order_id] = order
            if order and order.get("status") == "confirmed":
                confirmed += 1
                confirmed_units += sum(i["quantity"] for i in order["items"] if i["sku"] == sku)
            elif order and order.get("status") == "cancelled":
                cancelled += 1
        _, product = get_json(base, f"/inventory/products/{sku}")
        stock = []
        if product["reserved"] != 0:
            stock.append(f"{sku}: {product['reserved']} units still reserved with every order final")
        if product["available"] != initial - confirmed_units:
            stock.append(f"{sku}: available {product['available']}, expected "
                         f"{initial - confirmed_units} (seeded {initial} minus {confirmed_units} confirmed units)")
        notes = customer_violations(base, orders)
        deliveries, doubled, doubled_ids, redelivered = None, [], {}, {}
        if hook:
            waiting, doubled, deliveries, doubled_ids, redelivered = webhook_violations(hook, orders, killed_at)
            notes += waiting
        dead_letters = {}
        for fn in CONSUMERS:
            status, body = get_json(base, f"/{fn}/dead-letters", token)
            letters = (body or {}).get("dead_letters", []) if status == 200 else [f"GET -> {status}"]
            if letters:
                dead_letters[fn] = letters
        if (not violations and not stock and not dead_letters and not notes) or time.time() >= deadline:
            break
        log(f"{len(violations)} orders with violations, {len(stock)} stock, {len(notes)} notification lists, "
            f"{sum(map(len, dead_letters.values()))} dead letters; checking again")
        time.sleep(3)
        to_check = list(violations) or []
    print(json.dumps({
        "orders": len(ids), "final_after_s": final_s, "checked_after_s": round(time.time() - started, 1),
        "confirmed": confirmed, "cancelled": cancelled, "confirmed_units": confirmed_units,
        "product": product, "stock_violations": stock, "notification_violations": notes + doubled,
        "webhook_deliveries": deliveries, "webhook_doubled": doubled_ids,
        "webhook_redelivered": redelivered,
        "order_violations": violations, "dead_letters": dead_letters,
        "cancel_reasons": sorted({(o or {}).get("cancel_reason") or "" for o in orders.values()
                                  if (o or {}).get("status") == "cancelled"}),
    }))


# --- events / report -----------------------------------------------------------------------


def feed_length(base, token, source, query=""):
    """How many events a feed of `source` holds (`query`: empty, or `name=value&` pairs)."""
    after, n = 0, 0
    for _ in range(100000):
        status, page = get_json(base, f"/{source}/events?{query}after={after}&limit=500", token)
        if status != 200:
            sys.exit(f"GET /{source}/events: {status} {page}")
        batch = page["events"]
        n += len(batch)
        if not batch:
            break
        after = page["next_after"]
    return n


def events(base, token):
    """Events per source, and the copies each consumer was sent ("<source>><consumer>")."""
    counts = {source: feed_length(base, token, source) for source in SOURCES}
    for source, consumer in SUBSCRIPTIONS:
        counts[f"{source}>{consumer}"] = sum(
            feed_length(base, token, source, f"consumer={consumer}&partition={p}&")
            for p in range(4))
    print(json.dumps(counts))


METRIC = re.compile(r'^(shop_host_[a-z_]+)\{([^}]*)\} (\S+)$')


def parse_metrics(text):
    """{(name, frozenset(labels)): value} for the counters read here."""
    out = []
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m[2]))
        out.append((m[1], labels, float(m[3])))
    return out


def report(metrics_path, events_path):
    with open(metrics_path) as f:
        scraped = json.load(f)  # {"r1": [text, ...], ...}: every scrape of a replica's life
    with open(events_path) as f:
        counts = json.load(f)
    upstream = {c: [s for s, cc in SUBSCRIPTIONS if cc == c] for c in CONSUMERS}
    replicas = sorted(scraped)
    per = {}  # (replica, consumer) -> handled, failed, dups, deferred
    http = {}  # replica -> {component: requests served}
    for r in replicas:
        http[r] = {}
        for text in scraped[r]:
            for name, labels, value in parse_metrics(text):
                component, channel = labels.get("component"), labels.get("channel", "")
                if name == "shop_host_http_requests_total":
                    http[r][component] = http[r].get(component, 0) + value
                if component not in upstream:
                    continue
                parts = channel.split(".")  # shop.<source>.<consumer>.<partition>
                if len(parts) != 4 or parts[1] not in upstream[component] or parts[2] != component:
                    continue  # the wake, or a channel the consumer does not read
                key = (r, component)
                slot = per.setdefault(key, {"handled": 0, "failed": 0, "dups": 0, "deferred": 0})
                if name == "shop_host_redis_messages_total":
                    slot["handled" if labels.get("outcome") == "handled" else "failed"] += value
                elif name == "shop_host_events_duplicated_total":
                    slot["dups"] += value
                elif name == "shop_host_events_deferred_total":
                    slot["deferred"] += value
    lines = []
    lines.append("| consumer | events sent to it | replica | messages handled / event | duplicates / event | deferred / event | failed |")
    lines.append("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    totals = {}
    for c in CONSUMERS:
        n = sum(counts.get(f"{s}>{c}", 0) for s in upstream[c])
        sums = {"handled": 0, "failed": 0, "dups": 0, "deferred": 0}
        for r in replicas:
            slot = per.get((r, c), {"handled": 0, "failed": 0, "dups": 0, "deferred": 0})
            for k in sums:
                sums[k] += slot[k]
            lines.append(f"| {c} | {n} | {r} | {ratio(slot['handled'], n)} | {ratio(slot['dups'], n)} | "
                         f"{ratio(slot['deferred'], n)} | {int(slot['failed'])} |")
        lines.append(f"| {c} | {n} | **all** | {ratio(sums['handled'], n)} | {ratio(sums['dups'], n)} | "
                     f"{ratio(sums['deferred'], n)} | {int(sums['failed'])} |")
        totals[c] = (n, sums)
    lines.append("")
    # A message carries one event or, under backlog, a batch of them (docs/adr/0012): the
    # replicas an event reaches are the one that applies it and those that drop it.
    lines.append("| consumer | messages per event, all replicas | replicas that drop each event as a duplicate | replicas that receive each event (the one applying it and the duplicates) |")
    lines.append("| --- | ---: | ---: | ---: |")
    for c in CONSUMERS:
        n, sums = totals[c]
        lines.append(f"| {c} | {ratio(sums['handled'] + sums['failed'], n)} | {ratio(sums['dups'], n)} | "
                     f"{ratio(n + sums['dups'], n)} |")
    lines.append("")
    components = sorted({c for r in replicas for c in http[r] if c})
    lines.append("| replica | HTTP requests served: " + ", ".join(components) + " |")
    lines.append("| --- | ---: |")
    for r in replicas:
        lines.append(f"| {r} | " + ", ".join(str(int(http[r].get(c, 0))) for c in components) + " |")
    print("\n".join(lines))


def webhook(port):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    counts, lock = {}, threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status, body=b""):
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                key = json.loads(data)["id"]
            except (ValueError, KeyError, TypeError):
                return self.reply(400)
            parts = (self.headers.get("traceparent") or "").split("-")
            trace = parts[1] if len(parts) == 4 else ""
            with lock:
                counts.setdefault(key, []).append([round(time.time(), 3), trace])
            self.reply(200)

        def do_GET(self):
            with lock:
                body = json.dumps(counts).encode()
            self.reply(200, body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"


def subscribed(manifest):
    """Subscriptions one replica holds per channel: distinct addresses bound to it."""
    text = open(manifest).read()
    per = {}
    for block in text.split("[[trigger.redis]]")[1:]:
        block = block.split("[[")[0]
        channel = re.search(r'^channel\s*=\s*"([^"]+)"', block, re.M)
        address = re.search(r'^address\s*=\s*"([^"]+)"', block, re.M)
        if channel:
            per.setdefault(channel[1], set()).add(address[1] if address else "")
    for channel, addresses in sorted(per.items()):
        print(channel, len(addresses))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "place":
        base, total, rate, conc, sku, decline, run_id, progress, out = args
        place(base, int(total), float(rate), int(conc), sku, int(decline), run_id, progress, out)
    elif cmd == "check":
        base, orders_path, sku, initial, token, provider_key, settle, hook, killed_at = args
        check(base, orders_path, sku, int(initial), token, provider_key, float(settle), hook,
              float(killed_at) if killed_at else None)
    elif cmd == "webhook":
        webhook(int(args[0]))
    elif cmd == "events":
        events(args[0], args[1])
    elif cmd == "report":
        report(args[0], args[1])
    elif cmd == "subscribed":
        subscribed(args[0])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
