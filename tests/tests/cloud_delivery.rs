//! The app as deployed to Fermyon Cloud (deploy/cloud/spin.toml, docs/adr/0004): no Redis
//! anywhere, events pushed over HTTP to each consumer's `/<fn>/events/deliveries`. Real host,
//! real components, a real PostgreSQL database per SQL function (the Cloud manifest has no
//! SQLite database); each test checks the saga invariants afterwards.

use serde_json::{json, Value};
use shop_e2e::{
    assert_error, order_body, public_state, unique_key, unique_sku, Shop, ADMIN_TOKEN,
    DELIVERY_TOKEN,
};
use shop_kit::stream::partition_of;
use testkit::HttpResponse;

/// Asserts a 400 `INVALID_ARGUMENT` whose message starts with the offending `field`.
fn refused_naming(response: &HttpResponse, field: &str) {
    let error = assert_error(response, 400, "INVALID_ARGUMENT");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{field}:")),
        "{error}"
    );
}

fn notification_kinds(shop: &Shop, id: &str) -> Vec<Value> {
    shop.notifications(id)
        .iter()
        .map(|n| n["kind"].clone())
        .collect()
}

#[test]
fn happy_path_is_confirmed_and_notified_without_redis_and_the_client_does_not_wait() {
    let shop = Shop::start_cloud();
    let sku = unique_sku("CLOUD-HAPPY");
    shop.put_product(&sku, 1250, 10);
    // A slow provider (4 s a call, under billing's 5 s timeout): a client that waited for the
    // saga would get its answer only once the provider had settled the charge.
    shop.set_faults(json!({"latency_ms": 4000}));

    let response = shop.post_order(
        &order_body("cloud-alice", &[(&sku, 2)], "tok_visa"),
        Some(&unique_key()),
    );
    assert_eq!(response.status, 201, "POST /orders: {}", response.body);
    assert_eq!(response.json()["status"], "pending");
    let id = response.json()["id"]
        .as_str()
        .expect("order id")
        .to_string();
    let charge = shop.provider_charge(&id);
    assert!(
        charge.as_ref().is_none_or(|c| c["status"] == "processing"),
        "the charge was settled before POST /orders answered: the client waited for the saga: {charge:?}"
    );

    let order = shop.wait_final(&id);
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total_cents"], 2500);
    // The invariants wait (bounded) for the notification, which follows the final state.
    shop.check_invariants(std::slice::from_ref(&id));
    assert_eq!(notification_kinds(&shop, &id), [json!("order_confirmed")]);
    assert_eq!(shop.product(&sku)["available"], 8);
}

/// Places an order of `quantity` units out of `stock` paid with `token` and checks that it
/// ends cancelled for `reason`, with its units back, notified once.
fn cancelled_over_http(stock: i64, quantity: i64, token: &str, reason: &str) {
    let shop = Shop::start_cloud();
    let sku = unique_sku("CLOUD-CANCEL");
    shop.put_product(&sku, 900, stock);

    let id = shop.place_order("cloud-carol", &[(&sku, quantity)], token);
    let order = shop.wait_final(&id);

    assert_eq!(order["status"], "cancelled", "{order}");
    assert_eq!(order["cancel_reason"], reason);
    shop.check_invariants(std::slice::from_ref(&id));
    assert_eq!(notification_kinds(&shop, &id), [json!("order_cancelled")]);
    assert_eq!(shop.product(&sku)["available"], stock);
    let payment = shop.payment(&id).map(|p| p["status"].clone());
    let expected = (reason == "payment_declined").then(|| json!("declined"));
    assert_eq!(payment, expected, "payment of {id}");
}

#[test]
fn a_declined_payment_is_cancelled_over_http() {
    cancelled_over_http(4, 4, "tok_decline", "payment_declined");
}

#[test]
fn out_of_stock_is_cancelled_over_http() {
    cancelled_over_http(2, 3, "tok_visa", "out_of_stock");
}

#[test]
fn deliveries_need_the_delivery_token_and_a_well_formed_envelope_and_repeats_change_nothing() {
    let shop = Shop::start_cloud();
    let sku = unique_sku("CLOUD-AUTH");
    shop.put_product(&sku, 300, 5);
    let id = shop.place_order("cloud-dave", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&id)["status"], "confirmed");
    shop.check_invariants(std::slice::from_ref(&id));

    // The copy of this order's order-created orders sent inventory, as a replay attempt.
    let partition = partition_of(&id);
    let created = shop.stream("orders", "inventory", partition)[0].clone();
    let before = public_state(&shop, "cloud-dave");
    let deliver = |function: &str, token: Option<&str>, body: &Value| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        shop.send(
            "POST",
            &format!("/{function}/events/deliveries"),
            &headers,
            body,
        )
    };

    for function in ["orders", "inventory", "billing", "notifications"] {
        assert_error(&deliver(function, None, &created), 401, "UNAUTHENTICATED");
        assert_error(
            &deliver(function, Some("not-the-token"), &created),
            401,
            "UNAUTHENTICATED",
        );
        // The admin token may sweep and stock products, not inject events.
        assert_error(
            &deliver(function, Some(ADMIN_TOKEN), &created),
            401,
            "UNAUTHENTICATED",
        );
    }
    let mut tampered = created.clone();
    tampered["seq"] = json!(0);
    refused_naming(
        &deliver("inventory", Some(DELIVERY_TOKEN), &tampered),
        "seq",
    );
    // orders does not consume its own events.
    refused_naming(&deliver("orders", Some(DELIVERY_TOKEN), &created), "source");
    let mut unknown = created.clone();
    unknown["data"] = json!({"order_id": 7});
    assert_error(
        &deliver("billing", Some(DELIVERY_TOKEN), &unknown),
        400,
        "INVALID_ARGUMENT",
    );
    // The delivery token lets an event in; only the producer's MAC makes it count.
    let mut unsigned = created.clone();
    unsigned.as_object_mut().unwrap().remove("mac");
    refused_naming(
        &deliver("inventory", Some(DELIVERY_TOKEN), &unsigned),
        "mac",
    );
    let mut altered = created.clone();
    altered["occurred_at"] = json!("2020-01-01T00:00:00.000Z");
    refused_naming(&deliver("billing", Some(DELIVERY_TOKEN), &altered), "mac");
    assert_error(
        &deliver("notifications", Some(DELIVERY_TOKEN), &json!([1, 2])),
        400,
        "INVALID_ARGUMENT",
    );
    // A genuine copy is refused by every consumer but the one it is addressed to, whose
    // stream its seq numbers.
    for function in ["billing", "notifications"] {
        refused_naming(
            &deliver(function, Some(DELIVERY_TOKEN), &created),
            "consumer",
        );
    }
    // At-least-once: a copy delivered again is accepted and ignored.
    for (source, function) in [
        ("orders", "inventory"),
        ("inventory", "billing"),
        ("orders", "notifications"),
        ("billing", "orders"),
    ] {
        let copy = shop.stream(source, function, partition)[0].clone();
        let again = deliver(function, Some(DELIVERY_TOKEN), &copy);
        assert_eq!(again.status, 200, "{function}: {}", again.body);
        assert_eq!(again.json()["delivered"]["seq"], copy["seq"]);
    }

    // The wake (a consumer's message to itself) takes the delivery token and its one field;
    // a wake whose arm is not the consumer's current one ends at once.
    for function in ["orders", "inventory", "billing", "notifications"] {
        let wake = |token: Option<&str>, body: &Value| {
            let bearer = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = bearer
                .iter()
                .map(|b| ("authorization", b.as_str()))
                .collect();
            shop.send("POST", &format!("/{function}/events/wake"), &headers, body)
        };
        let stale = json!({"wake": "not-the-arm"});
        assert_error(&wake(Some(ADMIN_TOKEN), &stale), 401, "UNAUTHENTICATED");
        refused_naming(&wake(Some(DELIVERY_TOKEN), &json!({"wake": 1})), "wake");
        assert_eq!(wake(Some(DELIVERY_TOKEN), &stale).status, 202, "{function}");
    }

    assert_eq!(public_state(&shop, "cloud-dave"), before);
    shop.check_invariants(std::slice::from_ref(&id));
    // The sweep works without Redis too, and finds nothing left to do.
    for function in ["orders", "inventory", "billing"] {
        let report = shop.admin("POST", &format!("/{function}/sweep"), &Value::Null);
        assert_eq!(report.status, 200, "{function} sweep: {}", report.body);
        assert_eq!(report.json()["published"], 0, "{function}: {}", report.body);
    }
    assert_eq!(public_state(&shop, "cloud-dave"), before);
}
