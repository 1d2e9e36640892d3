#!/usr/bin/env python3
"""Saga completion at a fixed order rate, for bench/run.sh (oha measures POST latency alone).

  rate.py saga  BASE RATE SECONDS SKU      POST /orders at RATE/s, waits for every order to be
                                           final, prints saga completion "p50_ms p99_ms confirmed placed"
                                           (created -> confirmed, from the order's own history)

Orders are placed on schedule from a thread pool, so a slow answer does not delay the next
one (open loop).
"""
import http.client
import json
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


def main():
    mode, base, rate, seconds, sku = sys.argv[1:6]
    if mode != "saga":
        sys.exit(f"unknown mode {mode}")
    ids = drive(base, float(rate), float(seconds), sku)
    durations = saga(base, ids)
    print(f"{percentile(durations, 50):.1f} {percentile(durations, 99):.1f} {len(durations)} {len(ids)}")


if __name__ == "__main__":
    main()
