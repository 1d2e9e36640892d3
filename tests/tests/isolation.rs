//! One order's trouble stays with that order (docs/adr/0006): an event a consumer can never
//! apply is deferred, retried on its own schedule and parked, while every other order goes
//! through; a provider that refuses a charge (4xx) ends that order cancelled, naming the
//! refusal; a provider that was down, or answered too late, is caught up with by itself.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shop_e2e::{unique_sku, Shop, SETTLE};
use shop_kit::stream::partition_of;
use shop_kit::subscriptions::takers;
use testkit::eventually;

/// Billing's deferred events, over every channel.
const BILLING_DEFERRED: &str = "shop_host_events_deferred_total{component=\"billing\"";

/// How long 50 orders may take to end confirmed once placed, poison or not.
const FIFTY_ORDERS: Duration = Duration::from_secs(10);

/// Appends an event to `producer`'s outbox as the producer itself would (unpublished, next in
/// the order's stream of each consumer that takes `kind`), so that its next publish sends it: a
/// well-formed envelope whose data no consumer can apply.
fn inject(shop: &Shop, producer: &str, id: &str, kind: &str, data: &Value) {
    let order_id = data["order_id"].as_str().expect("order_id");
    let partition = partition_of(order_id);
    // Reading the feed opens (and so creates and migrates) the producer's database.
    shop.events(producer);
    let data = data.to_string().replace('\'', "''");
    let mut sql = format!(
        "BEGIN; INSERT INTO outbox (id, type, occurred_at, traceparent, data, partition) \
         VALUES ('{id}', '{kind}', '2026-01-01T00:00:00.000Z', \
           '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '{data}', {partition});"
    );
    for consumer in takers(producer, kind) {
        sql.push_str(&format!(
            " INSERT INTO outbox_streams (consumer, partition, pseq, position) \
             SELECT '{consumer}', {partition}, \
               (SELECT coalesce(max(pseq), 0) + 1 FROM outbox_streams \
                WHERE consumer = '{consumer}' AND partition = {partition}), \
               seq FROM outbox WHERE id = '{id}';"
        ));
    }
    shop.sql(producer, &format!("{sql} COMMIT;"));
}

fn parked_ids(shop: &Shop, function: &str) -> Vec<String> {
    let letters = shop.dead_letters(function);
    letters
        .iter()
        .filter_map(|l| l["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn poison_of_every_consumer_is_parked_while_fifty_orders_confirm() {
    let shop = Shop::start_with(&[("dead_letter_after", "2")]);
    let sku = unique_sku("ISOLATED");
    shop.put_product(&sku, 250, 60);

    // inventory, billing and notifications take orders' order-cancelled; orders and billing
    // take inventory's stock-reserved. Neither payload decodes.
    inject(
        &shop,
        "orders",
        "poison-from-orders",
        "order-cancelled",
        &json!({"order_id": "poison-a"}),
    );
    inject(
        &shop,
        "inventory",
        "poison-from-inventory",
        "stock-reserved",
        &json!({"order_id": "poison-b", "lines": "none"}),
    );
    let ids: Vec<String> = (0..50)
        .map(|n| shop.place_order(&format!("iso-{n}"), &[(&sku, 1)], "tok_visa"))
        .collect();
    let placed = Instant::now();
    let confirmed = eventually(FIFTY_ORDERS, || {
        ids.iter()
            .all(|id| shop.order(id)["status"] == "confirmed")
            .then_some(placed.elapsed())
    });
    let Some(took) = confirmed else {
        let states: Vec<String> = ids
            .iter()
            .map(|id| format!("{id}: {}", shop.order(id)["status"]))
            .collect();
        panic!(
            "not all confirmed:\n{}\n{}",
            states.join("\n"),
            shop.logs_tail()
        );
    };
    eprintln!("50 orders confirmed {took:?} after the last was placed");

    let expected = [
        ("inventory", vec!["poison-from-orders"]),
        ("notifications", vec!["poison-from-orders"]),
        ("orders", vec!["poison-from-inventory"]),
        (
            "billing",
            vec!["poison-from-inventory", "poison-from-orders"],
        ),
    ];
    for (function, poison) in expected {
        let parked = eventually(SETTLE, || {
            let mut parked = parked_ids(&shop, function);
            parked.sort();
            (parked == poison).then_some(parked)
        });
        assert!(
            parked.is_some(),
            "{function} parked {:?}, not {poison:?}\n{}",
            parked_ids(&shop, function),
            shop.logs_tail()
        );
    }
    shop.check_invariants(&ids);
}

#[test]
fn a_charge_the_provider_refuses_cancels_that_order_only() {
    let shop = Shop::start();
    let sku = unique_sku("REFUSED");
    shop.put_product(&sku, 400, 10);
    let refused = shop.place_order("refused", &[(&sku, 1)], "tok_invalid");
    let fine = shop.place_order("fine", &[(&sku, 1)], "tok_visa");
    let orders = shop.wait_final_all(&[refused.clone(), fine.clone()]);
    assert_eq!(orders[1]["status"], "confirmed");
    let order = &orders[0];
    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel_reason"], "payment_rejected", "{order}");
    let last = order["history"].as_array().and_then(|h| h.last()).cloned();
    let detail = last.map(|s| s["detail"].to_string()).unwrap_or_default();
    assert!(detail.contains("400"), "the refusal is named: {order}");
    assert_eq!(
        shop.payment(&refused).expect("payment")["status"],
        "declined"
    );
    shop.check_invariants(&[refused, fine]);
}

#[test]
fn orders_placed_while_the_provider_was_down_proceed_by_themselves_once_it_is_back() {
    let shop = Shop::start();
    let sku = unique_sku("COMEBACK");
    shop.put_product(&sku, 300, 10);
    shop.set_faults(json!({"down": true}));
    let ids: Vec<String> = (0..3)
        .map(|n| shop.place_order(&format!("comeback-{n}"), &[(&sku, 1)], "tok_visa"))
        .collect();
    // Billing tried each and deferred it.
    let deferred = eventually(SETTLE, || {
        (shop.metric_total(BILLING_DEFERRED) >= 3.0).then_some(())
    });
    assert!(
        deferred.is_some(),
        "billing deferred nothing\n{}",
        shop.logs_tail()
    );
    for id in &ids {
        assert_eq!(shop.order(id)["status"], "reserved");
    }

    // Back up: no sweep, no new event; each order completes on its own retry schedule.
    shop.set_faults(json!({"down": false}));
    let done = eventually(Duration::from_secs(10), || {
        ids.iter()
            .all(|id| shop.order(id)["status"] == "confirmed")
            .then_some(())
    });
    assert!(
        done.is_some(),
        "not confirmed by retries\n{}",
        shop.logs_tail()
    );
    shop.check_invariants(&ids);
}

#[test]
fn a_cancel_while_a_charge_outlives_billings_timeout_ends_with_the_charge_refunded() {
    // The provider answers after 1.5 s; billing gives up after 300 ms, so it never learns
    // the outcome from the charge itself.
    let shop = Shop::start_with(&[("provider_timeout_ms", "300")]);
    let sku = unique_sku("RACE");
    shop.put_product(&sku, 900, 5);
    shop.set_faults(json!({"latency_ms": 1500}));
    let id = shop.place_order("racer", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_past_pending(&id)["status"], "reserved");
    // The provider has received the charge: it is processing it.
    let seen = eventually(SETTLE, || shop.provider_charge(&id));
    assert!(seen.is_some(), "the charge never reached the provider");

    let cancel = shop.cancel(&id);
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    shop.set_faults(json!({"latency_ms": 0}));

    // Billing asks the provider for the charge by its key, finds it captured, refunds it.
    let refunded = eventually(SETTLE, || {
        shop.provider_charge(&id)
            .filter(|c| c["status"] == "refunded")
    });
    assert!(
        refunded.is_some(),
        "{:?}\n{}",
        shop.provider_charge(&id),
        shop.logs_tail()
    );
    assert_eq!(shop.order(&id)["status"], "cancelled");
    shop.check_invariants(&[id]);
}

/// Inventory's Redis messages, over every channel.
const INVENTORY_MESSAGES: &str = "shop_host_redis_messages_total{component=\"inventory\"";

/// A backlog travels in batches (docs/adr/0012): while orders' relay lease is held, 40 orders
/// and a poison wait in its outbox; the order placed once it is free sends them all, each
/// consumer stream's copies in a few messages, and downstream the saga stays batched. The
/// poison, one event of a batch, is parked alone while every order confirms.
#[test]
fn a_backlog_goes_in_batches_and_a_poison_among_them_stays_alone() {
    let shop = Shop::start_with(&[("dead_letter_after", "2")]);
    let sku = unique_sku("BATCHED");
    shop.put_product(&sku, 250, 60);

    shop.events("orders");
    shop.hold_relay_lease("orders", "test");
    let place = |n: usize| shop.place_order(&format!("batch-{n}"), &[(&sku, 1)], "tok_visa");
    let mut ids: Vec<String> = (0..20).map(place).collect();
    inject(
        &shop,
        "orders",
        "poison-in-a-batch",
        "order-cancelled",
        &json!({"order_id": "poison-c"}),
    );
    ids.extend((20..40).map(place));
    assert!(ids.iter().all(|id| shop.order(id)["status"] == "pending"));

    let messages_before = shop.metric_total(INVENTORY_MESSAGES);
    shop.expire_relay_lease("orders");
    ids.push(place(40));
    let placed = Instant::now();
    let confirmed = eventually(FIFTY_ORDERS, || {
        ids.iter()
            .all(|id| shop.order(id)["status"] == "confirmed")
            .then_some(placed.elapsed())
    });
    assert!(
        confirmed.is_some(),
        "not all confirmed:\n{:?}\n{}",
        ids.iter()
            .map(|id| shop.order(id)["status"].to_string())
            .collect::<Vec<_>>(),
        shop.logs_tail()
    );
    for function in ["inventory", "billing", "notifications"] {
        let parked = eventually(SETTLE, || {
            (parked_ids(&shop, function) == ["poison-in-a-batch"]).then_some(())
        });
        assert!(
            parked.is_some(),
            "{function} parked {:?}\n{}",
            parked_ids(&shop, function),
            shop.logs_tail()
        );
    }
    // Inventory applied 41 order-created, 41 payment-captured and the poison: one message
    // each, without batches.
    let messages = shop.metric_total(INVENTORY_MESSAGES) - messages_before;
    eprintln!("inventory took {messages} messages for 83 events");
    assert!(
        messages <= 41.0,
        "inventory took {messages} messages for 83 events"
    );
    shop.check_invariants(&ids);
}

/// A batch of slow events keeps to its time (docs/adr/0012): while inventory's relay lease is
/// held, orders pile up reserved until three of them share a stream; released, that stream's
/// stock-reserved events reach billing as one message. With the provider taking 1.2 s a
/// charge, billing starts no event of it past 2 s: the rest are deferred, and the wake
/// charges them, each once, with nothing calling the sweep.
#[test]
fn a_batch_of_slow_charges_defers_what_it_has_no_time_for() {
    let shop = Shop::start();
    let sku = unique_sku("SLOWBATCH");
    shop.put_product(&sku, 300, 20);
    shop.set_faults(json!({"latency_ms": 1200}));

    shop.events("inventory");
    shop.hold_relay_lease("inventory", "test");
    let mut ids: Vec<String> = Vec::new();
    let mut per_partition = [0; 4];
    while per_partition.iter().all(|&n| n < 3) {
        let id = shop.place_order("slow-batch", &[(&sku, 1)], "tok_visa");
        per_partition[partition_of(&id) as usize] += 1;
        ids.push(id);
    }
    // Inventory reserved each (its events wait in its outbox).
    let reserved = eventually(SETTLE, || {
        (shop.events("inventory").len() >= ids.len()).then_some(())
    });
    assert!(reserved.is_some(), "{}", shop.logs_tail());

    let deferred_before = shop.metric_total(BILLING_DEFERRED);
    shop.expire_relay_lease("inventory");
    ids.push(shop.place_order("slow-batch", &[(&sku, 1)], "tok_visa"));
    let done = eventually(Duration::from_secs(60), || {
        ids.iter()
            .all(|id| shop.order(id)["status"] == "confirmed")
            .then_some(())
    });
    assert!(
        done.is_some(),
        "not all confirmed: {:?}\n{}",
        ids.iter()
            .map(|id| shop.order(id)["status"].to_string())
            .collect::<Vec<_>>(),
        shop.logs_tail()
    );
    let deferred = shop.metric_total(BILLING_DEFERRED) - deferred_before;
    assert!(
        deferred >= 1.0,
        "billing deferred nothing of a batch of three 1.2 s charges"
    );
    shop.check_invariants(&ids);
}
