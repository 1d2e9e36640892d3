//! Fault injection end to end: Redis dies mid-saga, every event arrives twice, the
//! payment provider goes down or flakes, the host is SIGKILLed. After each, within a bounded
//! time (and with the catch-up sweep a deployment runs on a timer), the saga invariants hold for
//! every order: nothing lost, nothing done twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::json;
use shop_e2e::{is_final, unique_sku, RaiseOnDrop, Shop, SqlStore, WebhookReceiver, SETTLE};
use shop_kit::stream::{channel, partition_of, partitions};
use shop_kit::subscriptions::subscribers;
use testkit::eventually;

/// The channels events travel on, by producing function.
const PRODUCERS: [&str; 3] = ["orders", "inventory", "billing"];

/// Places `count` orders of one unit each, alternating accepted and declined cards.
fn place_mix(shop: &Shop, sku: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            let token = if n % 3 == 2 {
                "tok_decline"
            } else {
                "tok_visa"
            };
            shop.place_order(&format!("fault-{n}"), &[(sku, 1)], token)
        })
        .collect()
}

/// Statuses of the orders, for outcome comparisons.
fn outcomes(shop: &Shop, ids: &[String]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| {
            let order = shop.order(id);
            let status = order["status"].as_str().unwrap_or_default().to_string();
            let reason = order["cancel_reason"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (status, reason)
        })
        .collect()
}

#[test]
fn redis_stopped_and_restarted_mid_saga_loses_nothing() {
    let mut shop = Shop::start();
    let sku = unique_sku("REDIS");
    shop.put_product(&sku, 1000, 4);
    let mut ids = place_mix(&shop, &sku, 3);

    shop.redis.stop();
    // Orders are still accepted while the bus is down: the outbox keeps their events.
    let during = place_mix(&shop, &sku, 3);
    let feed = shop.events("orders");
    for id in &during {
        assert!(
            feed.iter().any(|e| e["data"]["order_id"] == id.as_str()),
            "{id}'s order-created is in the outbox"
        );
    }
    ids.extend(during);
    shop.redis.restart();
    shop.wait_subscribed();

    let orders = shop.recover_all(&ids);
    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    assert!(confirmed <= 4, "more units sold than stocked: {orders:#?}");
    shop.check_recovered(&ids);
}

/// Every stream of the producers: (producer, consumer, partition).
fn streams() -> Vec<(&'static str, &'static str, i64)> {
    PRODUCERS
        .iter()
        .flat_map(|&p| subscribers(p).flat_map(move |c| partitions().map(move |n| (p, c, n))))
        .collect()
}

/// Republishes, on its stream's channel, every copy of the producers' streams that it has not
/// republished yet (`seen`: how many of each stream were, a stream being in seq order).
fn duplicate_new_events(shop: &Shop, seen: &mut BTreeMap<Stream, usize>) -> usize {
    let mut copied = 0;
    for stream @ (producer, consumer, partition) in streams() {
        let done = seen.entry(stream).or_insert(0);
        for event in shop
            .stream(producer, consumer, partition)
            .iter()
            .skip(*done)
        {
            shop.redis
                .publish(&channel(producer, consumer, partition), &event.to_string());
            *done += 1;
            copied += 1;
        }
    }
    copied
}

type Stream = (&'static str, &'static str, i64);

#[test]
fn every_event_delivered_twice_is_applied_once() {
    let shop = Shop::start();
    let sku = unique_sku("TWICE");
    let scarce = unique_sku("TWICE-SCARCE");
    // One unit for each of the six mixed orders and one for the order cancelled below, so that
    // order never depends on a declined payment's stock coming back first.
    shop.put_product(&sku, 800, 7);
    shop.put_product(&scarce, 800, 1);

    let stop = AtomicBool::new(false);
    let (ids, mut seen) = thread::scope(|scope| {
        // A second publisher echoes every event while the sagas run.
        let echo = scope.spawn(|| {
            let mut seen = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                duplicate_new_events(&shop, &mut seen);
                thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        let stop_echo = RaiseOnDrop(&stop);
        let mut ids = place_mix(&shop, &sku, 6);
        ids.push(shop.place_order("fault-oos", &[(&scarce, 2)], "tok_visa"));
        // A slow provider keeps this order from confirming (a matter of milliseconds otherwise)
        // before its cancel arrives.
        shop.set_faults(json!({"latency_ms": 1000}));
        ids.push(shop.place_order("fault-cancel", &[(&sku, 1)], "tok_visa"));
        let cancel = shop.cancel(&ids[7]);
        shop.set_faults(json!({"latency_ms": 0}));
        assert_eq!(cancel.status, 200, "{}", cancel.body);
        shop.wait_final_all(&ids);
        shop.check_invariants(&ids);
        drop(stop_echo);
        (ids, echo.join().expect("echo thread"))
    });
    // Any event the echo missed at the end is duplicated now, after the fact.
    duplicate_new_events(&shop, &mut seen);
    let before = outcomes(&shop, &ids);
    let stock_before = shop.product(&sku);
    let feeds_before = feed_sizes(&shop);
    // And everything once more, long after the sagas ended: each copy reaches its consumer,
    // which counts it a duplicate.
    let duplicates = "shop_host_events_duplicated_total";
    let counted_before = shop.metric_total(duplicates);
    let expected: usize = streams()
        .into_iter()
        .map(|(producer, consumer, partition)| shop.stream(producer, consumer, partition).len())
        .sum();
    let mut replay = BTreeMap::new();
    let replayed = duplicate_new_events(&shop, &mut replay);
    assert!(
        replayed >= ids.len() * 2,
        "only {replayed} events to replay"
    );
    let counted = eventually(SETTLE, || {
        (shop.metric_total(duplicates) - counted_before >= expected as f64).then_some(())
    });
    assert!(
        counted.is_some(),
        "not every copy was received as a duplicate\n{}",
        shop.logs_tail()
    );

    assert_eq!(
        outcomes(&shop, &ids),
        before,
        "a duplicate changed an order"
    );
    assert_eq!(shop.product(&sku), stock_before, "a duplicate moved stock");
    assert_eq!(
        feed_sizes(&shop),
        feeds_before,
        "a duplicate produced new events"
    );
    shop.check_invariants(&ids);
}

/// The length of every stream, asserting each is gap-free (seq 1..=n).
fn feed_sizes(shop: &Shop) -> Vec<usize> {
    streams()
        .into_iter()
        .map(|(producer, consumer, partition)| {
            let seqs: Vec<i64> = shop
                .stream(producer, consumer, partition)
                .iter()
                .map(|e| e["seq"].as_i64().expect("event seq"))
                .collect();
            let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
            assert_eq!(
                seqs, expected,
                "{producer}'s stream {partition} for {consumer} is not gap-free"
            );
            seqs.len()
        })
        .collect()
}

#[test]
fn payment_provider_down_then_back_completes_every_order() {
    let shop = Shop::start_with(&[("breaker_open_ms", "500")]);
    let sku = unique_sku("DOWN");
    shop.put_product(&sku, 1500, 10);

    shop.set_faults(json!({"down": true}));
    let ids = place_mix(&shop, &sku, 4);
    // The orders get reserved but cannot be paid while the provider is down.
    let reserved = eventually(SETTLE, || {
        ids.iter()
            .all(|id| shop.order(id)["status"] != "pending")
            .then_some(())
    });
    assert!(reserved.is_some(), "orders never left pending");
    thread::sleep(Duration::from_secs(1));
    for id in &ids {
        let order = shop.order(id);
        assert_eq!(
            order["status"], "reserved",
            "an unreachable provider decides nothing: {order}"
        );
        let payment = shop.payment(id);
        assert!(
            payment.as_ref().is_none_or(|p| p["status"] != "captured"),
            "captured while the provider was down: {payment:?}"
        );
    }

    shop.set_faults(json!({"down": false}));
    let orders = shop.recover_all(&ids);
    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    assert_eq!(
        confirmed, 3,
        "every accepted card is charged once back: {orders:#?}"
    );
    shop.check_recovered(&ids);
}

#[test]
fn payment_provider_failing_half_the_calls_still_settles_every_order() {
    let shop = Shop::start_with(&[("breaker_open_ms", "500")]);
    let sku = unique_sku("FLAKY");
    shop.put_product(&sku, 700, 10);

    shop.set_faults(json!({"fail_rate": 0.5}));
    let ids = place_mix(&shop, &sku, 6);
    let orders = shop.recover_all(&ids);
    shop.set_faults(json!({"fail_rate": 0.0}));
    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    assert_eq!(confirmed, 4, "{orders:#?}");
    shop.check_recovered(&ids);
}

#[test]
fn host_killed_mid_saga_and_restarted_finishes_every_order() {
    let mut shop = Shop::start();
    let sku = unique_sku("KILL");
    // A unit per order: orders on different streams reserve in any order.
    shop.put_product(&sku, 2500, 6);
    // A slow provider keeps sagas in flight when the host dies.
    shop.set_faults(json!({"latency_ms": 1000}));
    let ids = place_mix(&shop, &sku, 6);
    // Killed while the provider holds a charge: that saga is mid-flight.
    let charging = eventually(SETTLE, || {
        ids.iter()
            .any(|id| {
                shop.provider_charge(id)
                    .is_some_and(|c| c["status"] == "processing")
            })
            .then_some(())
    });
    assert!(charging.is_some(), "no charge ever reached the provider");
    let in_flight = ids.iter().filter(|id| !is_final(&shop.order(id))).count();
    assert!(
        in_flight > 0,
        "every saga ended before the kill: nothing was tested"
    );

    shop.host.kill9();
    shop.host.restart();
    shop.wait_subscribed();
    shop.set_faults(json!({"latency_ms": 0}));

    let orders = shop.recover_all(&ids);
    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    assert_eq!(confirmed, 4, "{orders:#?}");
    shop.check_recovered(&ids);
}

#[test]
fn payment_provider_slower_than_the_timeout_is_given_up_on_then_charged_once() {
    let shop = Shop::start_with(&[("provider_timeout_ms", "400"), ("breaker_open_ms", "500")]);
    let sku = unique_sku("SLOW");
    shop.put_product(&sku, 1200, 5);

    // Every provider call outlasts billing's timeout, though the provider does finish it.
    shop.set_faults(json!({"latency_ms": 1500}));
    let id = shop.place_order("slowpoke", &[(&sku, 1)], "tok_visa");
    let reserved = eventually(SETTLE, || {
        (shop.order(&id)["status"] == "reserved").then_some(())
    });
    assert!(reserved.is_some(), "never reserved: {}", shop.order(&id));
    // Billing gives up on the call, cannot learn the outcome either, and keeps the event to
    // retry.
    let timed_out = eventually(SETTLE, || {
        let deferred = shop.metric_total("shop_host_events_deferred_total{component=\"billing\"");
        (deferred >= 1.0).then_some(())
    });
    assert!(
        timed_out.is_some(),
        "billing never gave up on the slow provider\n{}",
        shop.logs_tail()
    );
    assert!(
        shop.host.logs().contains("ConnectionReadTimeout"),
        "billing's timeout is logged"
    );
    let order = shop.order(&id);
    assert_eq!(
        order["status"], "reserved",
        "no answer, no decision: {order}"
    );
    assert!(
        shop.payment(&id).is_none_or(|p| p["status"] != "captured"),
        "billing recorded a charge it never got an answer for"
    );

    // Once the provider is fast again, billing's own retries finish the order: no sweep.
    shop.set_faults(json!({"latency_ms": 0}));
    let order = shop.wait_final(&id);
    assert_eq!(order["status"], "confirmed", "{order}");
    // The calls that timed out and the retry that succeeded are one charge.
    let captures = shop
        .events("billing")
        .iter()
        .filter(|e| e["data"]["order_id"] == id.as_str())
        .filter(|e| e["type"] == "payment-captured")
        .count();
    assert_eq!(captures, 1, "one capture for the order");
    let charge = shop.provider_charge(&id).expect("the provider's charge");
    assert_eq!(charge["amount_cents"], order["total_cents"], "{charge}");
    shop.check_recovered(&[id]);
}

#[test]
fn a_consumer_failing_for_a_while_catches_up() {
    let shop = Shop::start();
    let sku = unique_sku("LOCKED");
    shop.put_product(&sku, 600, 5);

    // Another process holds inventory's store exclusively until told to commit: no inventory
    // write goes through meanwhile.
    let lock = shop.lock_store("inventory");
    let received = || {
        shop.metric_total(
            "shop_host_redis_messages_total{component=\"inventory\",channel=\"shop.orders.inventory.",
        )
    };
    let before = received();
    let ids = place_mix(&shop, &sku, 3);
    let tried = match shop.sql_store() {
        // A message ends with nothing written once each of its statements has waited out the
        // host's 10 s busy timeout, and the messages of one stream queue behind it, so one
        // finished attempt is what is waited for.
        SqlStore::Sqlite => eventually(Duration::from_secs(60), || {
            (received() > before).then_some(())
        }),
        // The app sets no lock_timeout: inventory's statement waits for the lock, its message
        // unfinished, until the commit. That wait is what shows inventory tried.
        SqlStore::Postgres => eventually(SETTLE, || {
            (shop.statements_waiting_for_locks("inventory") > 0).then_some(())
        }),
    };
    assert!(tried.is_some(), "inventory never tried\n{}", shop.metrics());
    for id in &ids {
        assert_eq!(
            shop.order(id)["status"],
            "pending",
            "inventory could not have reserved"
        );
    }
    lock.release();

    let orders = shop.recover_all(&ids);
    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    assert_eq!(confirmed, 2, "{orders:#?}");
    shop.check_recovered(&ids);
}

#[test]
fn notification_webhook_failing_for_a_while_delivers_each_notification_once() {
    let hook = WebhookReceiver::start();
    hook.set_failing(true);
    let url = format!("{}/hooks/shop", hook.origin());
    let shop = Shop::start_with(&[
        ("notification_webhook_url", &url),
        ("notification_webhook_origin", &hook.origin()),
        ("breaker_failure_threshold", "2"),
        ("breaker_open_ms", "500"),
    ]);
    let sku = unique_sku("HOOK");
    shop.put_product(&sku, 400, 10);

    let ids = place_mix(&shop, &sku, 3);
    // The saga does not wait for the webhook.
    shop.wait_final_all(&ids);
    let refused = eventually(SETTLE, || (hook.refused() > 0).then_some(()));
    assert!(refused.is_some(), "the webhook was never called");
    assert!(hook.accepted().is_empty());

    hook.set_failing(false);
    let delivered = eventually(SETTLE, || {
        shop.sweep_all();
        ids.iter()
            .all(|id| {
                let notes = shop.notifications(id);
                notes.len() == 1 && notes[0]["status"] == "delivered"
            })
            .then_some(())
    });
    assert!(
        delivered.is_some(),
        "notifications never delivered\n{}",
        shop.logs_tail()
    );
    shop.check_invariants(&ids);

    let mut accepted: Vec<String> = hook
        .accepted()
        .iter()
        .filter_map(|body| body["id"].as_str().map(str::to_string))
        .collect();
    // Each delivery names its notification, by which a receiver drops a repeat.
    assert_eq!(hook.idempotency_keys(), accepted);
    accepted.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .map(|id| {
            shop.notifications(id)[0]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    expected.sort();
    assert_eq!(
        accepted, expected,
        "each notification is delivered exactly once"
    );
}

#[test]
fn host_killed_repeatedly_during_a_burst_loses_and_repeats_nothing() {
    let mut shop = Shop::start();
    let sku = unique_sku("CHAOS");
    shop.put_product(&sku, 333, 8);
    shop.set_faults(json!({"latency_ms": 200}));

    let mut ids = Vec::new();
    for round in 0..3 {
        ids.extend(place_mix(&shop, &sku, 4));
        thread::sleep(Duration::from_millis(150 * round));
        shop.host.kill9();
        shop.host.restart();
        shop.wait_subscribed();
    }
    shop.set_faults(json!({"latency_ms": 0}));
    let orders = shop.recover_all(&ids);
    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    assert!(confirmed <= 8, "more sold than stocked: {orders:#?}");
    shop.check_recovered(&ids);
}

/// Places orders of `customer` until one lands on stream `partition`; returns them all, that
/// one last.
fn orders_until_partition(shop: &Shop, customer: &str, sku: &str, partition: i64) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..64 {
        let id = shop.place_order(customer, &[(sku, 1)], "tok_visa");
        ids.push(id.clone());
        if partition_of(&id) == partition {
            return ids;
        }
    }
    panic!("64 orders and none on stream {partition}");
}

#[test]
fn a_missed_event_is_filled_from_the_feed_when_the_next_one_of_its_stream_arrives() {
    let shop = Shop::start();
    let sku = unique_sku("GAP");
    shop.put_product(&sku, 450, 80);

    // The order's order-created is recorded as sent without ever being sent: the consumers
    // miss it, as if Redis had lost it. Nothing calls the sweep in this test. (Reading the feed
    // creates orders' database.)
    shop.events("orders");
    shop.hold_relay_lease("orders", "test");
    let missed = shop.place_order("gappy", &[(&sku, 1)], "tok_visa");
    shop.sql(
        "orders",
        "UPDATE outbox_relay SET sent_through = (SELECT max(seq) FROM outbox), expires_at = 0;",
    );
    assert_eq!(shop.order(&missed)["status"], "pending");

    // Orders on other streams do not reveal the gap; the next one on its stream does, and the
    // consumers read what they missed from the feed.
    let mut ids = orders_until_partition(&shop, "gappy", &sku, partition_of(&missed));
    ids.push(missed);
    let orders = shop.wait_final_all(&ids);
    assert!(
        orders.iter().all(|o| o["status"] == "confirmed"),
        "{orders:#?}"
    );
    shop.check_invariants(&ids);
}

#[test]
fn an_event_made_while_redis_was_down_goes_out_by_itself_once_it_is_back() {
    let mut shop = Shop::start();
    let sku = unique_sku("OUTBOX");
    shop.put_product(&sku, 120, 10);

    shop.redis.stop();
    let first = shop.place_order("patient", &[(&sku, 1)], "tok_visa");
    assert_eq!(
        shop.order(&first)["status"],
        "pending",
        "no bus, no saga step"
    );
    shop.redis.restart();
    // No other order, no sweep: the instance that made the event keeps trying to publish it
    // until every consumer's subscription is back to hear it.
    assert_eq!(shop.wait_final(&first)["status"], "confirmed");
    shop.check_invariants(&[first]);
}

/// A relay killed while it holds its outbox's lease leaves the lease behind. Until it
/// expires, the other relays leave their events to its dead holder (the order waits); after
/// that, the next relay takes the lease over and publishes what waited, in order.
#[test]
fn a_lease_left_by_a_killed_relay_holds_events_back_only_until_it_expires() {
    let shop = Shop::start();
    let sku = unique_sku("LEASE");
    shop.put_product(&sku, 130, 10);
    let first = shop.place_order("leased", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&first)["status"], "confirmed");

    // The lease a killed holder leaves.
    shop.hold_relay_lease("orders", "killed");
    let held = shop.place_order("leased", &[(&sku, 1)], "tok_visa");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        shop.order(&held)["status"],
        "pending",
        "its order-created waits for the lease"
    );

    // The lease expires: the next relay takes it over and sends what waited.
    shop.expire_relay_lease("orders");
    let next = shop.place_order("leased", &[(&sku, 1)], "tok_visa");
    let ids = [first, held, next];
    let orders = shop.wait_final_all(&ids);
    assert!(
        orders.iter().all(|o| o["status"] == "confirmed"),
        "{orders:#?}"
    );
    shop.check_invariants(&ids);
}
