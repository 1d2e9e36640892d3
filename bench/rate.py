#!/usr/bin/env python3
"""Saga completion at a fixed order rate, for bench/run.sh (oha measures POST latency alone),
and the saga's drain rate, for bench/saga.sh.

  rate.py saga  BASE RATE SECONDS SKU      POST /orders at RATE/s, waits for every order to be
                                           final, prints saga completion "p50_ms p99_ms confirmed placed"
                                           (created -> confirmed, from the order's own history)
  rate.py place BASE N SKU CUSTOMER        POST /orders N times for CUSTOMER, as fast as 8
                                           connections go (closed loop); prints "created seconds"
  rate.py drain BASE CUSTOMER LIMIT_S PID...
                                           polls until none of CUSTOMER's orders is pending or
                                           reserved (up to LIMIT_S), then prints "done_ms confirmed
                                           cancelled open busy_ticks ticks_of_each_PID": done_ms the
                                           epoch ms it saw them all final, busy_ticks the machine's
                                           non-idle CPU and each PID's utime+stime (clock ticks),
                                           read at that moment, before the orders are counted

In saga mode orders are placed on schedule from a thread pool, so a slow answer does not delay
the next one (open loop). Reads of orders carry the admin token from BENCH_ADMIN_TOKEN (orders
are readable by their customer's cancel token or the admin only, docs/adr/0007).
"""
import http.client
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from urllib.parse import urlparse

local = threading.local()


def connection(base):
    """One keep-alive connection per worker thread."""
    conn = getattr(local, "conn", None)
    if conn is None:
        u = urlparse(base)
        conn = local.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    return conn


def request(base, method, path, body=None):
    for attempt in range(2):
        conn = connection(base)
        try:
            headers = {"content-type": "application/json"} if body is not None else {}
            if method == "GET" and os.environ.get("BENCH_ADMIN_TOKEN"):
                headers["authorization"] = "Bearer " + os.environ["BENCH_ADMIN_TOKEN"]
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            local.conn = None
            if attempt:
                raise
    raise RuntimeError("unreachable")


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return values[index]


def drive(base, rate, seconds, sku):
    """Places RATE orders per second for SECONDS; returns the ids of the orders created."""
    body = json.dumps(
        {"customer_id": "bench", "items": [{"sku": sku, "quantity": 1}], "payment_token": "tok_visa"}
    )
    ids, lock = [], threading.Lock()
    start = time.perf_counter() + 0.05
    total = int(rate * seconds)

    def one(i):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            status, data = request(base, "POST", "/orders", body)
        except Exception:  # not created: left out of the saga count
            return
        if status == 201:
            with lock:
                ids.append(json.loads(data)["id"])

    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(one, range(total)))
    return ids


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def saga(base, ids, deadline_s=60):
    """Waits for every order to be final; returns created -> confirmed durations in ms."""
    pending, durations = set(ids), []
    deadline = time.time() + deadline_s
    while pending and time.time() < deadline:
        for order_id in list(pending):
            status, data = request(base, "GET", f"/orders/{order_id}")
            if status != 200:
                continue
            order = json.loads(data)
            if order["status"] in ("confirmed", "cancelled"):
                pending.discard(order_id)
                steps = {step["status"]: step["at"] for step in order["history"]}
                if "confirmed" in steps:
                    created = parse_time(order["created_at"])
                    durations.append((parse_time(steps["confirmed"]) - created).total_seconds() * 1000)
        if pending:
            time.sleep(0.2)
    return durations


def place(base, total, sku, customer, workers=8):
    """POSTs TOTAL orders for CUSTOMER from WORKERS connections, each next as soon as the last
    answered; returns how many were created."""
    body = json.dumps(
        {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}], "payment_token": "tok_visa"}
    )

    def one(_):
        try:
            status, _data = request(base, "POST", "/orders", body)
        except Exception:
            return False
        return status == 201

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(one, range(total)))


def cpu_ticks(pid):
    """utime + stime of process PID, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def busy_ticks():
    """The machine's non-idle CPU time, in clock ticks: /proc/stat's cpu line less idle and iowait."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return sum(values) - values[3] - values[4]


def orders_of(base, customer, status, limit=100):
    """CUSTOMER's orders in STATUS: the first page only when LIMIT is 1, else every page."""
    found, cursor = [], None
    while True:
        path = f"/orders?customer_id={customer}&status={status}&limit={limit}"
        code, data = request(base, "GET", path + (f"&cursor={cursor}" if cursor else ""))
        if code != 200:
            raise RuntimeError(f"GET {path}: {code} {data[:200]!r}")
        page = json.loads(data)
        found += page["orders"]
        cursor = page.get("next_cursor")
        if limit == 1 or not cursor:
            return found


def drain(base, customer, limit_s, pids):
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if not any(orders_of(base, customer, s, limit=1) for s in ("pending", "reserved")):
            break
        time.sleep(0.2)
    done_ms = int(time.time() * 1000)
    ticks = [busy_ticks()] + [cpu_ticks(pid) for pid in pids]
    counts = [len(orders_of(base, customer, s)) for s in ("confirmed", "cancelled", "pending", "reserved")]
    return [done_ms] + counts[:2] + [counts[2] + counts[3]] + ticks


def main():
    mode, base = sys.argv[1:3]
    if mode == "saga":
        rate, seconds, sku = sys.argv[3:6]
        ids = drive(base, float(rate), float(seconds), sku)
        durations = saga(base, ids)
        print(f"{percentile(durations, 50):.1f} {percentile(durations, 99):.1f} {len(durations)} {len(ids)}")
    elif mode == "place":
        total, sku, customer = sys.argv[3:6]
        start = time.perf_counter()
        created = place(base, int(total), sku, customer)
        print(f"{created} {time.perf_counter() - start:.1f}")
    elif mode == "drain":
        customer, limit_s, pids = sys.argv[3], float(sys.argv[4]), sys.argv[5:]
        print(" ".join(str(v) for v in drain(base, customer, limit_s, pids)))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
