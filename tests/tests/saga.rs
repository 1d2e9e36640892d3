//! The saga (docs/adr/0001) end to end: real host, real Redis, real components, real
//! SQLite files; each test checks the saga invariants for every order it touched.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use shop_e2e::{assert_error, order_body, unique_key, unique_sku, RaiseOnDrop, Shop, SETTLE};
use shop_kit::stream::{channel, partitions};
use shop_kit::subscriptions::subscribers;
use testkit::eventually;

fn statuses(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .expect("order history")
        .iter()
        .filter_map(|step| step["status"].as_str().map(str::to_string))
        .collect()
}

fn stock(shop: &Shop, sku: &str) -> (i64, i64) {
    let product = shop.product(sku);
    let available = product["available"].as_i64().expect("available");
    let reserved = product["reserved"].as_i64().expect("reserved");
    (available, reserved)
}

#[test]
fn happy_path_confirms_charges_and_notifies() {
    let shop = Shop::start();
    let sku = unique_sku("HAPPY");
    shop.put_product(&sku, 1250, 10);

    let id = shop.place_order("alice", &[(&sku, 3)], "tok_visa");
    let order = shop.wait_final(&id);

    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total_cents"], 3750);
    assert_eq!(order["items"][0]["unit_price_cents"], 1250);
    assert!(order["cancel_reason"].is_null(), "{order}");
    assert_eq!(statuses(&order), ["pending", "reserved", "confirmed"]);
    let payment = shop.payment(&id).expect("payment of a confirmed order");
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["amount_cents"], 3750);
    shop.check_invariants(&[id]);
    assert_eq!(stock(&shop, &sku), (7, 0));
}

/// A customer's notifications are indexed in pages of a hundred (notifications/src/index.rs):
/// more orders than fit one page must all be listed, each once.
#[test]
fn a_customer_with_more_than_a_page_of_orders_lists_every_notification() {
    let shop = Shop::start();
    let sku = unique_sku("PAGED");
    shop.put_product(&sku, 100, 1_000);
    let customer = format!("paged-{}", unique_key());
    let mut ids: Vec<String> = (0..105)
        .map(|_| shop.place_order(&customer, &[(&sku, 1)], "tok_visa"))
        .collect();
    shop.wait_final_all(&ids);

    let listed = eventually(SETTLE, || {
        let list = shop.get_json(&format!("/notifications?customer_id={customer}"), 200);
        let notifications = list["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (notifications.len() >= ids.len()).then_some(notifications)
    })
    .unwrap_or_else(|| panic!("not every notification was listed\n{}", shop.logs_tail()));
    let mut listed_orders: Vec<String> = listed
        .iter()
        .map(|n| {
            assert_eq!(n["customer_id"], customer.as_str(), "{n}");
            assert_eq!(n["kind"], "order_confirmed", "{n}");
            n["order_id"].as_str().expect("order_id").to_string()
        })
        .collect();
    listed_orders.sort();
    ids.sort();
    assert_eq!(listed_orders, ids, "each order's notification, once");
    shop.check_invariants(&ids);
}

#[test]
fn out_of_stock_cancels_and_reserves_nothing_of_any_line() {
    let shop = Shop::start();
    let plenty = unique_sku("PLENTY");
    let scarce = unique_sku("SCARCE");
    shop.put_product(&plenty, 500, 10);
    shop.put_product(&scarce, 700, 2);

    let id = shop.place_order("bob", &[(&plenty, 1), (&scarce, 3)], "tok_visa");
    let order = shop.wait_final(&id);

    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel_reason"], "out_of_stock");
    assert_eq!(statuses(&order), ["pending", "cancelled"]);
    assert_eq!(
        shop.payment(&id),
        None,
        "no charge for an order never reserved"
    );
    assert_eq!(shop.provider_charge(&id), None);
    // All or nothing: the line that was in stock is not held either.
    shop.check_invariants(&[id]);
    assert_eq!(stock(&shop, &plenty), (10, 0));
    assert_eq!(stock(&shop, &scarce), (2, 0));
}

#[test]
fn declined_payment_cancels_and_releases_the_reservation() {
    let shop = Shop::start();
    let sku = unique_sku("DECLINE");
    shop.put_product(&sku, 900, 4);

    let id = shop.place_order("carol", &[(&sku, 4)], "tok_decline");
    let order = shop.wait_final(&id);

    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel_reason"], "payment_declined");
    assert_eq!(statuses(&order), ["pending", "reserved", "cancelled"]);
    assert_eq!(order["total_cents"], 3600);
    let payment = shop.payment(&id).expect("a declined payment is recorded");
    assert_eq!(payment["status"], "declined");
    shop.check_invariants(std::slice::from_ref(&id));
    assert_eq!(stock(&shop, &sku), (4, 0));

    // The released units can be sold again.
    let again = shop.place_order("carol", &[(&sku, 4)], "tok_visa");
    assert_eq!(shop.wait_final(&again)["status"], "confirmed");
    shop.check_invariants(&[id, again]);
    assert_eq!(stock(&shop, &sku), (0, 0));
}

#[test]
fn customer_cancel_before_confirmation_compensates() {
    let shop = Shop::start();
    let sku = unique_sku("CANCEL");
    shop.put_product(&sku, 2000, 5);

    // Right after placing: the saga is still in flight and must be compensated wherever it is.
    // The provider is down from here on, so that the saga (a few milliseconds otherwise)
    // cannot reach confirmation before the cancel arrives.
    shop.set_faults(json!({"down": true}));
    let early = shop.place_order("dave", &[(&sku, 2)], "tok_visa");
    let response = shop.cancel(&early);
    assert_eq!(
        response.status, 200,
        "cancel a pending order: {}",
        response.body
    );
    assert_eq!(response.json()["status"], "cancelled");

    // While billing cannot charge: the order is reserved, not yet confirmed.
    let slow = shop.place_order("dave", &[(&sku, 1)], "tok_visa");
    let reserved = shop.wait_past_pending(&slow);
    assert_eq!(reserved["status"], "reserved", "{reserved}");
    let response = shop.cancel(&slow);
    assert_eq!(
        response.status, 200,
        "cancel a reserved order: {}",
        response.body
    );
    shop.set_faults(json!({"down": false}));

    let orders = shop.wait_final_all(&[early.clone(), slow.clone()]);
    for order in &orders {
        assert_eq!(order["status"], "cancelled", "{order}");
        assert_eq!(order["cancel_reason"], "cancelled_by_customer", "{order}");
    }
    // Billing asks the provider whether a charge went through before it lets the order go.
    shop.check_invariants(&[early, slow]);
    assert_eq!(stock(&shop, &sku), (5, 0));
}

#[test]
fn a_slow_payment_provider_holds_up_billing_alone() {
    let shop = Shop::start();
    let sku = unique_sku("BULKHEAD");
    shop.put_product(&sku, 1000, 5);

    // Billing's handler of the first order's stock-reserved waits on the provider for 8 s.
    shop.set_faults(json!({"latency_ms": 8000}));
    let first = shop.place_order("erin", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_past_pending(&first)["status"], "reserved");

    // Inventory and orders have subscriptions of their own (docs/adr/0006, decision 2), so the
    // second order is reserved while billing still waits: were every consumer on one
    // subscription, its order-created would queue behind billing's handler, and the first order
    // would be confirmed before the second was reserved.
    let second = shop.place_order("erin", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_past_pending(&second)["status"], "reserved");
    let first_now = shop.order(&first);
    assert_eq!(
        first_now["status"], "reserved",
        "the first order still waits for its payment: {first_now}"
    );

    shop.set_faults(json!({"latency_ms": 0}));
    for order in shop.wait_final_all(&[first.clone(), second.clone()]) {
        assert_eq!(order["status"], "confirmed", "{order}");
    }
    shop.check_invariants(&[first, second]);
    assert_eq!(stock(&shop, &sku), (3, 0));
}

#[test]
fn customer_cancel_after_confirmation_is_a_conflict() {
    let shop = Shop::start();
    let sku = unique_sku("LATE");
    shop.put_product(&sku, 100, 3);
    let id = shop.place_order("erin", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&id)["status"], "confirmed");

    let response = shop.cancel(&id);
    let body = assert_error(&response, 409, "CONFLICT");
    assert_eq!(body["error"]["service"], "orders");
    let order = shop.order(&id);
    assert_eq!(
        order["status"], "confirmed",
        "a refused cancel changes nothing"
    );
    assert!(order["cancel_reason"].is_null());
    shop.check_invariants(&[id]);
    assert_eq!(stock(&shop, &sku), (2, 0));

    let unknown = "00000000-0000-4000-8000-000000000000";
    let response = shop.cancel(unknown);
    assert_error(&response, 404, "NOT_FOUND");
}

#[test]
fn idempotent_replay_returns_the_same_order_and_refuses_another_body() {
    let shop = Shop::start();
    let sku = unique_sku("IDEM");
    shop.put_product(&sku, 300, 10);
    let key = unique_key();
    let body = order_body("frank", &[(&sku, 2)], "tok_visa");

    let first = shop.post_order(&body, Some(&key));
    assert_eq!(first.status, 201, "{}", first.body);
    let id = first.json()["id"].as_str().expect("id").to_string();
    let replay = shop.post_order(&body, Some(&key));
    assert!(
        matches!(replay.status, 200 | 201),
        "replay: {} {}",
        replay.status,
        replay.body
    );
    assert_eq!(
        replay.json()["id"],
        id.as_str(),
        "same key and body give the same order"
    );

    let other = order_body("frank", &[(&sku, 3)], "tok_visa");
    assert_error(&shop.post_order(&other, Some(&key)), 409, "CONFLICT");

    let order = shop.wait_final(&id);
    assert_eq!(order["status"], "confirmed");
    // A replay after the saga finished still answers the same order, and charges nothing more.
    let late = shop.post_order(&body, Some(&key));
    assert_eq!(late.json()["id"], id.as_str(), "{}", late.body);
    let listed = shop.get_json("/orders?customer_id=frank", 200);
    let ids: Vec<&str> = listed["orders"]
        .as_array()
        .expect("orders list")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()], "one order for one key");
    shop.check_invariants(&[id]);
    assert_eq!(stock(&shop, &sku), (8, 0));
}

#[test]
fn twenty_concurrent_orders_for_the_last_five_units_sell_exactly_five() {
    let shop = Shop::start();
    let sku = unique_sku("LAST5");
    shop.put_product(&sku, 4200, 5);

    let done = AtomicBool::new(false);
    let ids: Vec<String> = thread::scope(|scope| {
        // Stock is sampled throughout: never negative, never more than was seeded.
        let monitor = scope.spawn(|| {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                samples.push(stock(&shop, &sku));
                thread::sleep(Duration::from_millis(10));
            }
            samples
        });
        let finish = RaiseOnDrop(&done);
        let handles: Vec<_> = (0..20)
            .map(|n| {
                let (shop, sku) = (&shop, &sku);
                scope
                    .spawn(move || shop.place_order(&format!("racer-{n}"), &[(sku, 1)], "tok_visa"))
            })
            .collect();
        let ids: Vec<String> = handles
            .into_iter()
            .map(|h| h.join().expect("order thread"))
            .collect();
        shop.wait_final_all(&ids);
        drop(finish);
        let samples = monitor.join().expect("stock monitor");
        assert!(!samples.is_empty(), "the monitor took no sample");
        for (available, reserved) in samples {
            assert!(
                available >= 0 && reserved >= 0 && available + reserved <= 5,
                "stock out of bounds during the race: available {available}, reserved {reserved}"
            );
        }
        ids
    });
    let orders = shop.wait_final_all(&ids);

    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    let out_of_stock = orders
        .iter()
        .filter(|o| o["status"] == "cancelled" && o["cancel_reason"] == "out_of_stock")
        .count();
    assert_eq!((confirmed, out_of_stock), (5, 15), "{orders:#?}");
    shop.check_invariants(&ids);
    assert_eq!(stock(&shop, &sku), (0, 0));
}

#[test]
fn bad_input_is_rejected_with_the_field_named_and_writes_nothing() {
    let shop = Shop::start();
    let sku = unique_sku("BAD");
    shop.put_product(&sku, 100, 5);
    let before = (shop.events("orders").len(), shop.events("inventory").len());

    let bad_orders = [
        (
            json!({"customer_id": "zed", "items": [], "payment_token": "tok_visa"}),
            "items",
        ),
        (
            json!({"customer_id": "zed", "items": [{"sku": sku, "quantity": 0}], "payment_token": "tok_visa"}),
            "quantity",
        ),
        (
            json!({"customer_id": "zed", "items": [{"sku": sku, "quantity": "2"}], "payment_token": "tok_visa"}),
            "quantity",
        ),
        (
            json!({"customer_id": "", "items": [{"sku": sku, "quantity": 1}], "payment_token": "tok_visa"}),
            "customer_id",
        ),
        (
            json!({"customer_id": "zed", "items": [{"sku": sku, "quantity": 1}]}),
            "payment_token",
        ),
        (
            json!({"customer_id": "zed", "items": [{"sku": sku, "quantity": 1}], "payment_token": "tok_visa", "extra": 1}),
            "extra",
        ),
        (json!(["not", "an", "object"]), ""),
    ];
    for (body, field) in bad_orders {
        let response = shop.post_order(&body, Some(&unique_key()));
        let error = assert_error(&response, 400, "INVALID_ARGUMENT");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "message {message:?} should name {field:?} for {body}"
        );
    }
    let garbage = shop.host.request(
        "POST",
        "/orders",
        &[("content-type", "application/json")],
        b"{not json",
    );
    assert_error(&garbage, 400, "INVALID_ARGUMENT");
    let response = shop.send("GET", "/orders/not-a-uuid", &[], &Value::Null);
    assert_error(&response, 400, "INVALID_ARGUMENT");

    let bad_product = json!({"name": "x", "price_cents": -1, "available": 3});
    let response = shop.admin("PUT", &format!("/inventory/products/{sku}"), &bad_product);
    assert_error(&response, 400, "INVALID_ARGUMENT");
    let good_product = json!({"name": "x", "price_cents": 1, "available": 99});
    let response = shop.send(
        "PUT",
        &format!("/inventory/products/{sku}"),
        &[],
        &good_product,
    );
    assert_error(&response, 401, "UNAUTHENTICATED");

    // Nothing was written: no order, no event, the product as seeded.
    let listed = shop.get_json("/orders?customer_id=zed", 200);
    assert_eq!(listed["orders"], json!([]), "{listed}");
    let after = (shop.events("orders").len(), shop.events("inventory").len());
    assert_eq!(after, before, "a rejected request emits no event");
    assert_eq!(stock(&shop, &sku), (5, 0));
    assert_eq!(shop.product(&sku)["price_cents"], 100);
}

#[test]
fn the_invariant_check_catches_stock_changed_behind_the_sagas_back() {
    let shop = Shop::start();
    let sku = unique_sku("TAMPER");
    shop.put_product(&sku, 100, 5);
    let id = shop.place_order("gina", &[(&sku, 2)], "tok_visa");
    assert_eq!(shop.wait_final(&id)["status"], "confirmed");
    // The asynchronous tail (sale recorded, notification) settles first.
    shop.check_invariants(std::slice::from_ref(&id));

    // As if one unit were sold twice: stock no longer equals seeded minus confirmed units.
    let body = json!({"name": "t", "price_cents": 100, "available": 2});
    let response = shop.admin("PUT", &format!("/inventory/products/{sku}"), &body);
    assert!(matches!(response.status, 200 | 201), "{}", response.body);
    let violations = shop.violations(&[id]);
    assert!(
        violations
            .iter()
            .any(|v| v.contains(&sku) && v.contains("expected 3")),
        "{violations:?}"
    );
}

#[test]
fn concurrent_replays_of_one_key_create_one_order() {
    let shop = Shop::start();
    let sku = unique_sku("IDEM-RACE");
    shop.put_product(&sku, 250, 10);
    let key = unique_key();
    let body = order_body("hana", &[(&sku, 1)], "tok_visa");

    let answers: Vec<(u16, String)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| shop.post_order(&body, Some(&key))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let response = h.join().expect("replay thread");
                (response.status, response.body)
            })
            .collect()
    });
    let mut ids = Vec::new();
    for (status, body) in &answers {
        assert!(matches!(status, 200 | 201), "{status} {body}");
        let order: Value = serde_json::from_str(body).expect("order JSON");
        ids.push(order["id"].as_str().expect("id").to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one key, one order: {answers:?}");
    assert_eq!(shop.wait_final(&ids[0])["status"], "confirmed");
    shop.check_invariants(&ids);
    assert_eq!(stock(&shop, &sku), (9, 0));
}

#[test]
fn cancels_racing_the_saga_end_either_cancelled_and_refunded_or_confirmed() {
    let shop = Shop::start();
    let sku = unique_sku("CANCEL-RACE");
    shop.put_product(&sku, 990, 20);

    let ids: Vec<String> = (0..10)
        .map(|n| shop.place_order(&format!("racer-{n}"), &[(&sku, 1)], "tok_visa"))
        .collect();
    // Cancels land at staggered moments, some before and some after the payment.
    let answers: Vec<u16> = thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let shop = &shop;
                scope.spawn(move || {
                    thread::sleep(Duration::from_millis(40 * n as u64));
                    shop.cancel(id).status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("cancel thread"))
            .collect()
    });
    let orders = shop.wait_final_all(&ids);
    for (order, status) in orders.iter().zip(&answers) {
        let expected = match status {
            200 => "cancelled",
            409 => "confirmed",
            other => panic!("cancel answered {other} for {order}"),
        };
        assert_eq!(
            order["status"], expected,
            "cancel answered {status}: {order}"
        );
    }
    shop.check_invariants(&ids);
}

/// Orders placed from several clients at once publish their events concurrently: each copy of
/// an event reaches its consumer's stream channel once, only consumers that take its type get
/// one, and copies arrive in seq order within each stream (one relay at a time holds the
/// outbox's lease and publishes what the others committed, a page per round trip).
#[test]
fn events_published_at_once_reach_their_channel_once_each_in_seq_order() {
    let shop = Shop::start();
    let sku = unique_sku("ORDERED");
    shop.put_product(&sku, 100, 1000);
    let client = redis::Client::open(shop.redis.address()).expect("redis address");
    let mut connection = client.get_connection().expect("connect to redis");
    let mut pubsub = connection.as_pubsub();
    pubsub.psubscribe("shop.orders.*").expect("psubscribe");

    let ids: Vec<String> = thread::scope(|scope| {
        let placers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    (0..5)
                        .map(|_| shop.place_order("ordered", &[(&sku, 1)], "tok_visa"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        placers
            .into_iter()
            .flat_map(|placer| placer.join().expect("placer thread"))
            .collect()
    });
    shop.wait_final_all(&ids);
    assert!(
        shop.events("orders").len() >= 80,
        "each order published its creation and its end"
    );
    // One copy per consumer that takes the event: order-created to inventory, order-confirmed
    // to notifications.
    let copies: usize = subscribers("orders")
        .flat_map(|c| partitions().map(move |p| (c, p)))
        .map(|(c, p)| shop.stream("orders", c, p).len())
        .sum();
    assert_eq!(copies, 2 * ids.len(), "each order's events, once each");
    // Either filter alone pages the outbox: one consumer's copies, or one partition's events.
    let to_notifications = shop.feed("orders", "consumer=notifications&");
    assert_eq!(
        to_notifications.len(),
        ids.len(),
        "one order-confirmed each"
    );
    assert!(to_notifications
        .iter()
        .all(|e| e["consumer"] == "notifications" && e["type"] == "order-confirmed"));
    let events = shop.events("orders");
    for p in partitions() {
        let of_p = shop.feed("orders", &format!("partition={p}&"));
        let expected = events.iter().filter(|e| e["partition"] == p).count();
        assert_eq!(of_p.len(), expected, "partition {p}");
    }

    pubsub.set_read_timeout(Some(SETTLE)).expect("read timeout");
    let mut streams: BTreeMap<(String, i64), Vec<i64>> = BTreeMap::new();
    let mut received = 0;
    while received < copies {
        let message = pubsub.get_message().expect("every copy, published");
        // One envelope, or a batch of one stream's envelopes (docs/adr/0012).
        let payload: Value = serde_json::from_slice(message.get_payload_bytes()).expect("JSON");
        let envelopes = match payload {
            Value::Array(batch) => batch,
            one => vec![one],
        };
        for envelope in envelopes {
            let partition = envelope["partition"].as_i64().expect("partition");
            let consumer = envelope["consumer"].as_str().expect("consumer").to_string();
            assert_eq!(
                message.get_channel_name(),
                channel("orders", &consumer, partition)
            );
            streams
                .entry((consumer, partition))
                .or_default()
                .push(envelope["seq"].as_i64().expect("seq"));
            received += 1;
        }
    }
    assert!(streams.len() > 2, "orders spread over streams: {streams:?}");
    for (stream, seqs) in &streams {
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, &expected, "stream {stream:?}");
    }
    shop.check_invariants(&ids);
}
