//! Observability end to end: one order followed through the host's logs by its trace id, and the
//! host's Prometheus metrics moving as the traffic sent says they must.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use shop_e2e::{order_body, unique_key, unique_sku, Shop, SETTLE};
use shop_kit::stream::{channel, partition_of};
use testkit::eventually;

/// The trace id the test's client starts; every step of the saga must continue it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The host's log records (JSON lines) that carry `trace_id`.
fn records_of_trace(logs: &str, trace_id: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["trace_id"] == trace_id)
        .collect()
}

/// Whether a component's log record names the order (as a field or in its message).
fn mentions_order(record: &Value, order_id: &str) -> bool {
    record["fields"]["order_id"] == order_id
        || record["message"]
            .as_str()
            .is_some_and(|m| m.contains(order_id))
}

#[test]
fn one_order_is_followed_through_every_function_by_its_trace_id() {
    let shop = Shop::start();
    let sku = unique_sku("TRACE");
    shop.put_product(&sku, 990, 5);

    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let key = unique_key();
    let response = shop.send(
        "POST",
        "/orders",
        &[("idempotency-key", &key), ("traceparent", &traceparent)],
        &order_body("trace-customer", &[(&sku, 2)], "tok_visa"),
    );
    assert_eq!(response.status, 201, "POST /orders: {}", response.body);
    let id = response.json()["id"]
        .as_str()
        .expect("order id")
        .to_string();

    let order = shop.wait_final(&id);
    assert_eq!(order["status"], "confirmed", "{order}");
    // The order's timeline names what caused each step, and when.
    let timeline: Vec<(&str, &str)> = order["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|step| {
            assert!(
                step["at"].as_str().is_some_and(|at| at.ends_with('Z')),
                "{step}"
            );
            (
                step["status"].as_str().unwrap_or_default(),
                step["source"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        timeline,
        [
            ("pending", "orders: POST /orders"),
            ("reserved", "inventory: stock-reserved"),
            ("confirmed", "billing: payment-captured"),
        ]
    );
    let notified = eventually(SETTLE, || {
        (!shop.notifications(&id).is_empty()).then_some(())
    });
    assert!(notified.is_some(), "no notification for {id}");

    // Every function that took part logged this order under the client's trace id.
    let expected = ["orders", "inventory", "billing", "notifications"];
    let followed = eventually(SETTLE, || {
        let records = records_of_trace(&shop.host.logs(), TRACE_ID);
        let components: BTreeSet<String> = records
            .iter()
            .filter(|r| mentions_order(r, &id))
            .filter_map(|r| r["component"].as_str().map(str::to_string))
            .collect();
        expected
            .iter()
            .all(|c| components.contains(*c))
            .then_some(records)
    });
    let Some(records) = followed else {
        panic!(
            "not every function logged order {id} with trace {TRACE_ID}\n{}",
            shop.logs_tail()
        );
    };
    // The functions' own JSON lines carry the same trace id, not just the host's tag.
    for component in expected {
        let own = records
            .iter()
            .filter(|r| r["component"] == component)
            .any(|r| r["fields"]["trace_id"] == TRACE_ID && r["fields"]["service"] == component);
        assert!(own, "{component} never logged trace {TRACE_ID} itself");
    }
    // The host's forwarded lines name the trigger that ran the component.
    let triggers: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["trigger"].as_str())
        .collect();
    assert!(
        triggers.contains("http") && triggers.contains("redis"),
        "{triggers:?}"
    );
    // No record of another order's trace leaks into this one.
    let other = records
        .iter()
        .filter_map(|r| r["fields"]["order_id"].as_str())
        .find(|o| *o != id);
    assert_eq!(other, None, "a foreign order in trace {TRACE_ID}");
}

/// The value of one sample (`name{labels}`) in Prometheus text; 0 when it is not there yet.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_as_the_traffic_sent_says() {
    let shop = Shop::start();
    let sku = unique_sku("METRICS");
    shop.put_product(&sku, 400, 5);
    let route = r#"component="inventory",route="/inventory/...""#;
    let not_found = format!(r#"shop_host_http_requests_total{{{route},status="404"}}"#);
    let timed = format!("shop_host_http_request_duration_seconds_count{{{route}}}");
    let slow = format!(r#"shop_host_http_request_duration_seconds_bucket{{le="+Inf",{route}}}"#);

    // Known HTTP traffic: three lookups of a product that does not exist.
    let before = shop.metrics();
    for _ in 0..3 {
        let response = shop.host.get(&format!("/inventory/products/{sku}-MISSING"));
        assert_eq!(response.status, 404, "{}", response.body);
    }
    let after = shop.metrics();
    assert_eq!(
        sample(&after, &not_found) - sample(&before, &not_found),
        3.0
    );
    assert_eq!(sample(&after, &timed) - sample(&before, &timed), 3.0);
    assert_eq!(sample(&after, &slow) - sample(&before, &slow), 3.0);
    // One instantiation per request, each timed (and well under the histogram's top bucket).
    let instance = r#"component="inventory",trigger="http""#;
    let instantiated = format!("shop_host_instantiation_duration_seconds_count{{{instance}}}");
    let seconds = format!("shop_host_instantiation_duration_seconds_sum{{{instance}}}");
    assert_eq!(
        sample(&after, &instantiated) - sample(&before, &instantiated),
        3.0
    );
    let took = sample(&after, &seconds) - sample(&before, &seconds);
    assert!(took > 0.0 && took < 3.0, "3 instantiations took {took} s");
    let errors = format!("shop_host_http_request_errors_total{{{route}}}");
    assert_eq!(sample(&after, &errors), 0.0, "a 404 is not a server error");

    // Known event traffic: one order moves every consumer of its events.
    let id = shop.place_order("metrics-customer", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&id)["status"], "confirmed");
    let handled = |component: &str, channel: &str, outcome: &str| {
        format!(
            r#"shop_host_redis_messages_total{{component="{component}",channel="{channel}",outcome="{outcome}"}}"#
        )
    };
    // Its events travel on its stream of each source.
    let stream = partition_of(&id);
    let consumers = [
        ("inventory", channel("orders", "inventory", stream)),
        ("billing", channel("inventory", "billing", stream)),
        ("orders", channel("billing", "orders", stream)),
    ];
    let moved = eventually(SETTLE, || {
        let now = shop.metrics();
        consumers
            .iter()
            .all(|(c, ch)| {
                sample(&now, &handled(c, ch, "handled"))
                    > sample(&after, &handled(c, ch, "handled"))
            })
            .then_some(now)
    });
    let Some(now) = moved else {
        panic!("event metrics never moved:\n{}", shop.metrics());
    };
    for (component, channel) in &consumers {
        assert_eq!(sample(&now, &handled(component, channel, "failed")), 0.0);
    }
    let created =
        r#"shop_host_http_requests_total{component="orders",route="/orders/...",status="201"}"#;
    assert!(sample(&now, created) >= 1.0, "{now}");

    // Every instance started for that traffic has finished.
    let idle = eventually(SETTLE, || {
        let text = shop.metrics();
        let started = sample(
            &text,
            r#"shop_host_instances_total{component="inventory",trigger="redis"}"#,
        );
        let running: f64 = text
            .lines()
            .filter(|l| l.starts_with("shop_host_instances_in_flight{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (started >= 1.0 && running == 0.0).then_some(())
    });
    assert!(
        idle.is_some(),
        "instances still in flight:\n{}",
        shop.metrics()
    );

    // The admin listener serves metrics only; the app's listener never does.
    assert_eq!(shop.host.get("/metrics").status, 404);
}

/// Waits until `series` has grown by at least `by` from `before`; returns the scrape.
fn grown(shop: &Shop, series: &str, before: f64, by: f64) -> String {
    eventually(SETTLE, || {
        let now = shop.metrics();
        (sample(&now, series) - before >= by).then_some(now)
    })
    .unwrap_or_else(|| panic!("{series} never grew by {by}:\n{}", shop.metrics()))
}

#[test]
fn log_derived_metrics_count_duplicates_breaker_transitions_and_dead_letters() {
    let shop = Shop::start_with(&[
        ("breaker_failure_threshold", "1"),
        ("breaker_open_ms", "500"),
    ]);
    let sku = unique_sku("LOGMETRICS");
    shop.put_product(&sku, 300, 10);
    let on_stream = |metric: &str, order_id: &str| {
        format!(
            r#"shop_host_{metric}_total{{component="inventory",channel="shop.orders.inventory.{}"}}"#,
            partition_of(order_id)
        )
    };
    let transitions = |to: &str| {
        format!(
            r#"shop_host_breaker_transitions_total{{component="billing",breaker="breaker:payment_provider",to="{to}"}}"#
        )
    };

    // An event sent twice: the second copy is a duplicate to inventory, counted once.
    let id = shop.place_order("metrics-dup", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&id)["status"], "confirmed");
    let duplicated = on_stream("events_duplicated", &id);
    let created = shop
        .stream("orders", "inventory", partition_of(&id))
        .into_iter()
        .find(|e| e["data"]["order_id"] == id.as_str())
        .expect("the order's order-created event");
    let before = shop.metrics();
    let to_inventory = channel("orders", "inventory", partition_of(&id));
    assert!(shop.redis.publish(&to_inventory, &created.to_string()) > 0);
    let after = grown(&shop, &duplicated, sample(&before, &duplicated), 1.0);
    assert_eq!(
        sample(&after, &duplicated) - sample(&before, &duplicated),
        1.0
    );

    // The provider down: billing's breaker opens; back up: a trial (half-open) closes it.
    assert_eq!(sample(&after, &transitions("open")), 0.0, "{after}");
    shop.set_faults(json!({"down": true}));
    let unpaid = shop.place_order("metrics-breaker", &[(&sku, 1)], "tok_visa");
    grown(&shop, &transitions("open"), 0.0, 1.0);
    shop.set_faults(json!({"down": false}));
    assert_eq!(shop.wait_final(&unpaid)["status"], "confirmed");
    let recovered = grown(&shop, &transitions("closed"), 0.0, 1.0);
    assert!(
        sample(&recovered, &transitions("half_open")) >= 1.0,
        "{recovered}"
    );

    // An event inventory cannot read, next in its stream: deferred at its first failure,
    // then parked after dead_letter_after attempts with nothing calling the sweep.
    let poison_order = "poison-order";
    let stream = partition_of(poison_order);
    let next_seq = shop.next_seq("orders", "inventory", stream);
    let poison = Shop::sign(&json!({
        "id": "poison-1", "type": "order-created", "source": "orders",
        "consumer": "inventory", "partition": stream, "seq": next_seq,
        "occurred_at": "2026-01-01T00:00:00Z", "traceparent": "",
        "data": {"order_id": poison_order}
    }));
    let deferred = on_stream("events_deferred", poison_order);
    let dead_lettered = on_stream("events_dead_lettered", poison_order);
    let before = shop.metrics();
    assert_eq!(sample(&before, &dead_lettered), 0.0, "{before}");
    let to_inventory = channel("orders", "inventory", stream);
    assert!(shop.redis.publish(&to_inventory, &poison.to_string()) > 0);
    let parked = grown(&shop, &dead_lettered, 0.0, 1.0);
    assert_eq!(sample(&parked, &dead_lettered), 1.0, "{parked}");
    assert_eq!(sample(&parked, &deferred), 1.0, "{parked}");
    let letters = shop
        .admin("GET", "/inventory/dead-letters", &Value::Null)
        .json();
    assert_eq!(letters["dead_letters"][0]["id"], "poison-1", "{letters}");
    assert_eq!(letters["dead_letters"][0]["attempts"], 5, "{letters}");
}
