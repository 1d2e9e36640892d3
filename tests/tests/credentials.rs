//! Nobody where they don't belong (docs/adr/0007): the payment provider's API takes the shop's
//! key, event feeds answer only their consumers and admins, only what a function of the shop
//! signed is applied, and only an order's placer (or an admin) cancels it. Black-box over
//! HTTP and Redis against the running app.

use serde_json::{json, Value};
use shop_e2e::{
    assert_error, order_body, unique_key, unique_sku, Shop, ADMIN_TOKEN, INTERNAL_KEY, PROVIDER_KEY,
};
use shop_kit::seal::{Keys, Purpose};
use shop_kit::stream::partition_of;
use testkit::{eventually, HttpResponse};

fn with_bearer(shop: &Shop, method: &str, path: &str, token: &str, body: &Value) -> HttpResponse {
    let bearer = format!("Bearer {token}");
    shop.send(method, path, &[("authorization", &bearer)], body)
}

#[test]
fn the_payment_provider_takes_only_the_shops_key_and_refunds_add_up_to_the_capture() {
    let shop = Shop::start();
    let sku = unique_sku("KEY");
    shop.put_product(&sku, 1000, 2);
    let id = shop.place_order("key-ann", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&id)["status"], "confirmed");
    let charge = shop.provider_charge(&id).expect("the order's charge");
    assert_eq!(charge["status"], "captured");
    assert_eq!(charge["refunded_cents"], 0);
    let provider_ref = charge["provider_ref"].as_str().unwrap().to_string();

    // Without the key, or with any other credential, the provider answers 401 and does nothing.
    let refund = |amount: i64, key: &str| json!({"provider_ref": provider_ref, "amount_cents": amount, "idempotency_key": key});
    let charge_body = json!({"amount_cents": 100, "currency": "USD", "token": "tok_visa",
                             "idempotency_key": unique_key()});
    for token in ["", "wrong-key", ADMIN_TOKEN] {
        for (method, path, body) in [
            (
                "POST",
                "/payment-sim/refunds".to_string(),
                refund(1000, "steal"),
            ),
            (
                "POST",
                "/payment-sim/charges".to_string(),
                charge_body.clone(),
            ),
            ("GET", format!("/payment-sim/charges/{id}"), Value::Null),
        ] {
            let response = with_bearer(&shop, method, &path, token, &body);
            assert_error(&response, 401, "UNAUTHENTICATED");
        }
    }
    assert_eq!(
        shop.provider_charge(&id).unwrap(),
        charge,
        "nothing changed"
    );

    // With the key: partial refunds add up, a retry answers the same refund, a key reused for
    // another refund conflicts, and nothing goes past the capture.
    let key = |k: &str| format!("{id}-{k}");
    let first = shop.provider("POST", "/payment-sim/refunds", &refund(300, &key("a")));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["status"], "captured", "a partial refund");
    let again = shop.provider("POST", "/payment-sim/refunds", &refund(300, &key("a")));
    assert_eq!(again.json(), first.json());
    let reused = shop.provider("POST", "/payment-sim/refunds", &refund(200, &key("a")));
    assert_error(&reused, 409, "CONFLICT");
    let over = shop.provider("POST", "/payment-sim/refunds", &refund(701, &key("b")));
    assert_error(&over, 400, "INVALID_ARGUMENT");
    assert_eq!(shop.provider_charge(&id).unwrap()["refunded_cents"], 300);
    let rest = shop.provider("POST", "/payment-sim/refunds", &refund(700, &key("c")));
    assert_eq!(rest.json()["status"], "refunded", "{}", rest.body);
    let done = shop.provider_charge(&id).unwrap();
    assert_eq!(
        (done["status"].clone(), done["refunded_cents"].clone()),
        (json!("refunded"), json!(1000))
    );
    let more = shop.provider("POST", "/payment-sim/refunds", &refund(1, &key("d")));
    assert_error(&more, 409, "CONFLICT");
    assert!(
        !done.to_string().contains("tok_visa"),
        "no card token: {done}"
    );
}

#[test]
fn event_feeds_answer_only_their_consumers_and_admins_and_no_public_answer_holds_a_card_token() {
    let shop = Shop::start();
    let sku = unique_sku("FEED");
    shop.put_product(&sku, 500, 2);
    let card = format!("tok_{}", unique_key().replace('-', ""));
    let id = shop.place_order("feed-bob", &[(&sku, 1)], &card);
    assert_eq!(shop.wait_final(&id)["status"], "confirmed");

    let keys = Keys::new(INTERNAL_KEY).unwrap();
    let anonymous = shop.send("GET", "/payment-sim/events", &[], &Value::Null);
    assert_error(&anonymous, 401, "UNAUTHENTICATED");
    for function in ["orders", "inventory", "billing", "notifications"] {
        let path = format!("/{function}/events");
        let anonymous = shop.send("GET", &path, &[], &Value::Null);
        assert_error(&anonymous, 401, "UNAUTHENTICATED");
        for wrong in [
            "nope",
            PROVIDER_KEY,
            &keys.token(Purpose::FeedToken, "elsewhere"),
        ] {
            assert_error(
                &with_bearer(&shop, "GET", &path, wrong, &Value::Null),
                401,
                "UNAUTHENTICATED",
            );
        }
        let consumer = with_bearer(
            &shop,
            "GET",
            &path,
            &keys.token(Purpose::FeedToken, function),
            &Value::Null,
        );
        assert_eq!(consumer.status, 200, "{path}: {}", consumer.body);
        let admin = shop.admin("GET", &path, &Value::Null);
        assert_eq!(admin.json(), consumer.json(), "{path}");
        // Every event leaves its producer signed.
        for event in consumer.json()["events"].as_array().unwrap() {
            let env: shop_kit::Envelope = serde_json::from_value(event.clone()).unwrap();
            assert_eq!(keys.verify(&env), Ok(()), "{event}");
        }
    }
    assert!(
        shop.events("orders")
            .iter()
            .any(|e| e.to_string().contains(&card)),
        "the consumers (billing) still get the token they charge"
    );

    for path in [
        format!("/orders/{id}"),
        "/orders?customer_id=feed-bob".to_string(),
        format!("/billing/payments/{id}"),
        format!("/notifications?order_id={id}"),
        "/inventory/products".to_string(),
    ] {
        let response = shop.send("GET", &path, &[], &Value::Null);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        assert!(
            !response.body.contains(&card),
            "{path} shows the card token"
        );
    }
}

#[test]
fn customers_see_their_own_orders_and_only_the_placer_or_an_admin_cancels() {
    let shop = Shop::start();
    let sku = unique_sku("OWN");
    shop.put_product(&sku, 500, 10);
    // The provider is down, so that the orders stay cancellable.
    shop.set_faults(json!({"down": true}));
    let key = unique_key();
    let placed = shop.post_order(&order_body("own-cat", &[(&sku, 1)], "tok_visa"), Some(&key));
    assert_eq!(placed.status, 201, "{}", placed.body);
    let placed = placed.json();
    let id = placed["id"].as_str().unwrap().to_string();
    let token = placed["cancel_token"]
        .as_str()
        .expect("a cancel token")
        .to_string();
    assert_eq!(token, Shop::cancel_token(&id));
    let replay = shop.post_order(&order_body("own-cat", &[(&sku, 1)], "tok_visa"), Some(&key));
    assert_eq!(
        replay.json()["cancel_token"],
        token.as_str(),
        "a replay answers the same token"
    );
    let other = shop.place_order("own-dan", &[(&sku, 1)], "tok_visa");

    // Listing every customer's orders is for admins; one customer's list holds only theirs.
    assert_error(
        &shop.send("GET", "/orders", &[], &Value::Null),
        401,
        "UNAUTHENTICATED",
    );
    assert_error(
        &shop.send("GET", "/orders?status=pending", &[], &Value::Null),
        401,
        "UNAUTHENTICATED",
    );
    let all = shop.admin("GET", "/orders?limit=100", &Value::Null).json();
    assert!(all["orders"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == other.as_str()));
    let mine = shop.get_json("/orders?customer_id=own-cat", 200);
    let customers: Vec<&Value> = mine["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["customer_id"])
        .collect();
    assert!(
        !customers.is_empty() && customers.iter().all(|c| *c == "own-cat"),
        "{mine}"
    );

    // Cancelling takes the order's own token: none, a wrong one, or another order's is 401.
    let path = format!("/orders/{id}/cancel");
    assert_error(
        &shop.send("POST", &path, &[], &Value::Null),
        401,
        "UNAUTHENTICATED",
    );
    for wrong in ["x", &Shop::cancel_token(&other), PROVIDER_KEY] {
        assert_error(
            &with_bearer(&shop, "POST", &path, wrong, &Value::Null),
            401,
            "UNAUTHENTICATED",
        );
    }
    assert_ne!(
        shop.order(&id)["status"],
        "cancelled",
        "a refused cancel changes nothing"
    );
    let cancelled = with_bearer(&shop, "POST", &path, &token, &Value::Null);
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json()["status"], "cancelled");
    let by_admin = shop.admin("POST", &format!("/orders/{other}/cancel"), &Value::Null);
    assert_eq!(by_admin.status, 200, "{}", by_admin.body);
    shop.set_faults(json!({"down": false}));
    let ids = [id, other];
    shop.wait_final_all(&ids);
    shop.check_invariants(&ids);
}

#[test]
fn an_event_not_signed_by_the_shop_is_refused_counted_and_changes_nothing() {
    let shop = Shop::start();
    let sku = unique_sku("FORGE");
    shop.put_product(&sku, 700, 2);
    // Billing cannot charge: the order waits, reserved, for its payment.
    shop.set_faults(json!({"down": true}));
    let id = shop.place_order("forge-eve", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_past_pending(&id)["status"], "reserved");

    // payment-captured for it, as the next event of billing's stream, unsigned and then with a
    // MAC made with another key: were it applied, the order would be confirmed unpaid and the
    // real event dropped as a duplicate.
    let partition = partition_of(&id);
    let next_seq = shop.next_seq("billing", "orders", partition);
    let forged = json!({
        "id": unique_key(), "type": "payment-captured", "source": "billing",
        "consumer": "orders", "partition": partition, "seq": next_seq,
        "occurred_at": "2026-01-01T00:00:00.000Z", "traceparent": "",
        "data": {"order_id": id, "amount_cents": 700, "provider_ref": "ch_forged"}
    });
    let mut env: shop_kit::Envelope = serde_json::from_value(forged.clone()).unwrap();
    Keys::new("not-the-shops-key").unwrap().sign(&mut env);
    let channel = shop_kit::stream::channel("billing", "orders", partition);
    assert!(shop.redis.publish(&channel, &forged.to_string()) > 0);
    assert!(
        shop.redis
            .publish(&channel, &serde_json::to_string(&env).unwrap())
            > 0
    );
    // The same two as one batch (docs/adr/0012): each is refused on its own.
    let batch = json!([forged, serde_json::to_value(&env).unwrap()]);
    assert!(shop.redis.publish(&channel, &batch.to_string()) > 0);
    // A genuine copy addressed to another consumer: orders' order-created as sent to
    // inventory, replayed on billing's stream, where its seq would take a real event's place.
    let for_inventory = shop.stream("orders", "inventory", partition);
    let copy = for_inventory
        .last()
        .expect("inventory's copy of order-created");
    let to_billing = shop_kit::stream::channel("orders", "billing", partition);
    assert!(shop.redis.publish(&to_billing, &copy.to_string()) > 0);

    let counted = |component: &str, reason: &str| {
        shop.metric_total(&format!(
            "shop_host_events_forged_total{{component=\"{component}\",reason=\"{reason}\"}}"
        ))
    };
    let refused = eventually(shop_e2e::SETTLE, || {
        (counted("orders", "unsigned") >= 2.0
            && counted("orders", "bad_mac") >= 2.0
            && counted("billing", "misaddressed") >= 1.0)
            .then_some(())
    });
    assert!(refused.is_some(), "{}", shop.metrics());
    let order = shop.order(&id);
    assert_eq!(order["status"], "reserved", "{order}");

    // The real payment still goes through once the provider is back.
    shop.set_faults(json!({"down": false}));
    let done = shop.wait_final(&id);
    assert_eq!(done["status"], "confirmed", "{done}");
    assert_ne!(shop.payment(&id).unwrap()["provider_ref"], "ch_forged");
    shop.check_invariants(&[id]);
}
