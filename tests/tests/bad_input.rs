//! Bad input over every route: malformed JSON, wrong types, missing fields, oversized
//! values, unknown ids and routes, wrong methods (405 with `Allow`), wrong content types and
//! admin routes without a valid bearer token. Each is answered with its documented status and
//! the one error shape, no store changes, and the admin token never reaches the host's logs.

use serde_json::{json, Value};
use shop_e2e::{
    assert_error, order_body, public_state, unique_key, unique_sku, Shop, ADMIN_TOKEN, PROVIDER_KEY,
};

/// An order id (UUID) orders never issued.
const UNKNOWN_ORDER: &str = "00000000-0000-4000-8000-000000000000";

/// Sends raw bytes with a content type and optional bearer token.
fn raw(
    shop: &Shop,
    method: &str,
    path: &str,
    content_type: &str,
    admin: bool,
    body: &[u8],
) -> testkit::HttpResponse {
    let bearer = credential(path, admin);
    let mut headers = vec![("content-type", content_type)];
    headers.extend(bearer.as_deref().map(|b| ("authorization", b)));
    shop.host.request(method, path, &headers, body)
}

/// The bearer a well-meaning caller sends: the admin token on admin routes, the provider key on
/// payment-sim's API.
fn credential(path: &str, admin: bool) -> Option<String> {
    if admin {
        Some(format!("Bearer {ADMIN_TOKEN}"))
    } else if path.starts_with("/payment-sim/") {
        Some(format!("Bearer {PROVIDER_KEY}"))
    } else {
        None
    }
}

/// The JSON-body routes: method, path and whether they need the admin token.
fn body_routes(sku: &str) -> Vec<(&'static str, String, bool)> {
    vec![
        ("POST", "/orders".into(), false),
        ("PUT", format!("/inventory/products/{sku}"), true),
        ("POST", "/payment-sim/charges".into(), false),
        ("POST", "/payment-sim/refunds".into(), false),
        ("PUT", "/payment-sim/faults".into(), true),
    ]
}

fn malformed_bodies() -> Vec<Vec<u8>> {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000));
    vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"{\"a\":".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"text\"".to_vec(),
        b"42".to_vec(),
        b"{} {}".to_vec(),
        b"{\"customer_id\": \"c\",}".to_vec(),
        vec![0xff, 0xfe, b'{', b'}'],
        deep.into_bytes(),
        deep_object.into_bytes(),
        // Larger than the functions' 64 KiB body limit, smaller than the host's.
        format!("{{\"customer_id\": \"{}\"}}", "a".repeat(70 * 1024)).into_bytes(),
    ]
}

#[test]
fn bad_bodies_are_refused_and_change_nothing() {
    let shop = Shop::start();
    let sku = unique_sku("BAD");
    shop.put_product(&sku, 250, 3);
    let customer = "bad-input";
    let id = shop.place_order(customer, &[(&sku, 1)], "tok_visa");
    shop.wait_final(&id);
    let before = public_state(&shop, customer);

    // Malformed JSON on every body route.
    for (method, path, admin) in body_routes(&sku) {
        for body in malformed_bodies() {
            let response = raw(&shop, method, &path, "application/json", admin, &body);
            let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
            assert_eq!(
                response.status, 400,
                "{method} {path} {shown:?}: {}",
                response.body
            );
            assert_error(&response, 400, "INVALID_ARGUMENT");
        }
    }

    // Wrong types, missing fields, unknown fields and out-of-range values, per route.
    let long = "x".repeat(300);
    let items = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"sku": format!("S{i}"), "quantity": 1}))
            .collect()
    };
    let good_order = order_body(customer, &[(&sku, 1)], "tok_visa");
    let mut orders: Vec<Value> = vec![json!({})];
    for (field, value) in [
        ("customer_id", json!(7)),
        ("customer_id", json!("")),
        ("customer_id", json!("c".repeat(65))),
        ("items", json!("SKU")),
        ("items", json!([])),
        ("items", json!([{}])),
        ("items", json!(items(51))),
        ("items", json!([{"sku": sku, "quantity": "2"}])),
        ("items", json!([{"sku": sku, "quantity": 1.5}])),
        ("items", json!([{"sku": sku, "quantity": 0}])),
        ("items", json!([{"sku": sku, "quantity": 1001}])),
        (
            "items",
            json!([{"sku": sku, "quantity": 1}, {"sku": sku, "quantity": 1}]),
        ),
        ("items", json!([{"sku": long, "quantity": 1}])),
        ("items", json!([{"sku": sku, "quantity": 1, "extra": true}])),
        ("payment_token", json!(true)),
        ("payment_token", json!(long)),
        ("unexpected", json!(1)),
    ] {
        let mut body = good_order.clone();
        body[field] = value;
        orders.push(body);
    }
    let mut without = good_order.clone();
    without.as_object_mut().unwrap().remove("items");
    orders.push(without);

    let product = json!({"name": "Thing", "price_cents": 100, "available": 1});
    let mut products: Vec<Value> = vec![json!({})];
    for (field, value) in [
        ("name", json!(5)),
        ("name", json!("")),
        ("name", json!(long)),
        ("price_cents", json!("100")),
        ("price_cents", json!(-1)),
        ("price_cents", json!(1e300)),
        ("available", json!(-1)),
        ("available", json!(0.5)),
        ("reserved", json!(0)),
    ] {
        let mut body = product.clone();
        body[field] = value;
        products.push(body);
    }

    let charge = json!({"amount_cents": 100, "currency": "EUR", "token": "tok_visa", "idempotency_key": unique_key()});
    let mut charges: Vec<Value> = vec![json!({})];
    for (field, value) in [
        ("amount_cents", json!("100")),
        ("amount_cents", json!(0)),
        ("amount_cents", json!(i64::MAX)),
        ("currency", json!("euro")),
        ("currency", json!(978)),
        ("token", json!("")),
        ("idempotency_key", json!(long)),
        ("idempotency_key", json!(["k"])),
    ] {
        let mut body = charge.clone();
        body[field] = value;
        charges.push(body);
    }

    let refund =
        json!({"provider_ref": "pr-x", "amount_cents": 1, "idempotency_key": unique_key()});
    let mut refunds: Vec<Value> = vec![json!({})];
    for (field, value) in [
        ("provider_ref", json!(1)),
        ("amount_cents", json!(-5)),
        ("idempotency_key", json!("")),
    ] {
        let mut body = refund.clone();
        body[field] = value;
        refunds.push(body);
    }

    let faults = vec![
        json!({"fail_rate": "half"}),
        json!({"fail_rate": 1.5}),
        json!({"fail_rate": -0.1}),
        json!({"latency_ms": -1}),
        json!({"latency_ms": 10_000_000}),
        json!({"down": "yes"}),
        json!({"sideways": true}),
    ];

    let cases = [
        ("POST", "/orders".to_string(), false, orders),
        ("PUT", format!("/inventory/products/{sku}"), true, products),
        ("POST", "/payment-sim/charges".into(), false, charges),
        ("POST", "/payment-sim/refunds".into(), false, refunds),
        ("PUT", "/payment-sim/faults".into(), true, faults),
    ];
    for (method, path, admin, bodies) in cases {
        for body in bodies {
            let bytes = body.to_string().into_bytes();
            let response = raw(&shop, method, &path, "application/json", admin, &bytes);
            assert_eq!(
                response.status, 400,
                "{method} {path} {body}: {}",
                response.body
            );
            assert_error(&response, 400, "INVALID_ARGUMENT");
        }
    }

    // Wrong content types: valid JSON bodies declared as anything but JSON, or not declared at
    // all, are refused with 415 before they are read (a form or text body is not the API's).
    let valid = [
        ("POST", "/orders".to_string(), false, good_order.clone()),
        ("PUT", format!("/inventory/products/{sku}"), true, product),
        ("POST", "/payment-sim/charges".into(), false, charge),
        ("POST", "/payment-sim/refunds".into(), false, refund),
        (
            "PUT",
            "/payment-sim/faults".into(),
            true,
            json!({"down": true}),
        ),
    ];
    assert_eq!(valid.len(), body_routes(&sku).len(), "every body route");
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some("text/json"),
        Some(""),
        None,
    ] {
        for (method, path, admin, body) in &valid {
            let bearer = credential(path, *admin);
            let mut headers = Vec::new();
            if let Some(content_type) = content_type {
                headers.push(("content-type", content_type));
            }
            headers.extend(bearer.as_deref().map(|b| ("authorization", b)));
            let bytes = body.to_string().into_bytes();
            let response = shop.host.request(method, path, &headers, &bytes);
            assert_eq!(
                response.status, 415,
                "{method} {path} as {content_type:?}: {}",
                response.body
            );
            assert_error(&response, 415, "UNSUPPORTED_MEDIA_TYPE");
        }
    }

    // A bad idempotency key is refused rather than ignored.
    for key in ["", &"k".repeat(129), "has space"] {
        let response = shop.send("POST", "/orders", &[("idempotency-key", key)], &good_order);
        assert_error(&response, 400, "INVALID_ARGUMENT");
    }

    let after = public_state(&shop, customer);
    assert_eq!(before, after, "a refused request changed a store");
}

#[test]
fn unknown_ids_routes_and_methods_get_404_and_405_with_allow() {
    let shop = Shop::start();
    let before = public_state(&shop, "nobody");

    for (method, path) in [
        ("GET", format!("/orders/{UNKNOWN_ORDER}")),
        ("GET", "/inventory/products/NO-SUCH-SKU".to_string()),
        ("GET", format!("/billing/payments/{UNKNOWN_ORDER}")),
        ("GET", "/orders/health/extra".into()),
        ("GET", "/inventory/nothing-here".into()),
        ("GET", "/billing/payments".into()),
        ("GET", "/notifications/nothing/here".into()),
        ("GET", "/payment-sim/nothing".into()),
    ] {
        let response = shop.send(method, &path, &[], &Value::Null);
        assert_eq!(response.status, 404, "{method} {path}: {}", response.body);
        assert_error(&response, 404, "NOT_FOUND");
    }
    let refund =
        json!({"provider_ref": "pr-unknown", "amount_cents": 1, "idempotency_key": unique_key()});
    assert_error(&shop.cancel(UNKNOWN_ORDER), 404, "NOT_FOUND");
    let response = shop.provider("POST", "/payment-sim/refunds", &refund);
    assert_error(&response, 404, "NOT_FOUND");
    let response = shop.provider("GET", "/payment-sim/charges/no-such-key", &Value::Null);
    assert_error(&response, 404, "NOT_FOUND");

    for (method, path, allow) in [
        ("DELETE", "/orders".to_string(), "GET, POST"),
        ("PATCH", format!("/orders/{UNKNOWN_ORDER}"), "GET"),
        ("GET", format!("/orders/{UNKNOWN_ORDER}/cancel"), "POST"),
        ("GET", "/orders/sweep".into(), "POST"),
        ("POST", "/orders/events".into(), "GET"),
        ("DELETE", "/inventory/products".into(), "GET"),
        ("POST", "/inventory/products/SKU-1".into(), "GET, PUT"),
        ("PUT", format!("/billing/payments/{UNKNOWN_ORDER}"), "GET"),
        ("POST", "/billing/health".into(), "GET"),
        ("PUT", "/notifications".into(), "GET"),
        ("GET", "/notifications/sweep".into(), "POST"),
        ("GET", "/payment-sim/charges".into(), "POST"),
        ("DELETE", "/payment-sim/faults".into(), "GET, PUT"),
        ("GET", "/payment-sim/refunds".into(), "POST"),
    ] {
        let response = shop.send(method, &path, &[], &Value::Null);
        assert_error(&response, 405, "METHOD_NOT_ALLOWED");
        let mut got: Vec<&str> = response
            .header("allow")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .collect();
        got.sort_unstable();
        let mut want: Vec<&str> = allow.split(", ").collect();
        want.sort_unstable();
        assert_eq!(got, want, "Allow of {method} {path}");
    }

    // Query parameters of the wrong type or out of range.
    for path in [
        "/orders?limit=0",
        "/orders?limit=101",
        "/orders?limit=ten",
        "/orders?status=lost",
        "/orders?cursor=abc",
        "/orders?customer_id=",
        "/orders?color=red",
        "/notifications?order_id=not-an-id",
    ] {
        let response = shop.send("GET", path, &[], &Value::Null);
        assert_error(&response, 400, "INVALID_ARGUMENT");
    }
    // The feeds are for consumers and admins: the credential is checked before the query.
    for path in [
        "/orders/events?after=-1",
        "/inventory/events?limit=100000",
        "/billing/events?after=1.5",
        "/notifications/events?page=2",
    ] {
        let anonymous = shop.send("GET", path, &[], &Value::Null);
        assert_error(&anonymous, 401, "UNAUTHENTICATED");
        assert_error(
            &shop.admin("GET", path, &Value::Null),
            400,
            "INVALID_ARGUMENT",
        );
    }

    assert_eq!(before, public_state(&shop, "nobody"), "a store changed");
}

#[test]
fn admin_routes_need_the_bearer_token_which_is_never_logged() {
    let shop = Shop::start();
    let sku = unique_sku("ADM");
    let before = public_state(&shop, "nobody");
    let product = json!({"name": "Thing", "price_cents": 100, "available": 1});
    let faults = json!({"down": true});
    let wrong = [
        None,
        Some("Bearer wrong-token".to_string()),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])),
        Some(format!("bearer{ADMIN_TOKEN}")),
        Some(format!("Basic {ADMIN_TOKEN}")),
        Some(ADMIN_TOKEN.to_string()),
        Some("Bearer ".to_string()),
    ];
    let mut routes = vec![
        ("PUT", format!("/inventory/products/{sku}"), product.clone()),
        ("PUT", "/payment-sim/faults".to_string(), faults),
    ];
    for function in shop_e2e::FUNCTIONS {
        routes.push(("POST", format!("/{function}/sweep"), Value::Null));
    }
    for (method, path, body) in &routes {
        for authorization in &wrong {
            let headers: Vec<(&str, &str)> = authorization
                .as_deref()
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            let response = shop.send(method, path, &headers, body);
            let shown = authorization.as_deref().unwrap_or("none");
            assert_eq!(
                response.status, 401,
                "{method} {path} ({shown}): {}",
                response.body
            );
            assert_error(&response, 401, "UNAUTHENTICATED");
        }
    }
    assert_eq!(before, public_state(&shop, "nobody"), "a store changed");
    let response = shop.send(
        "GET",
        &format!("/inventory/products/{sku}"),
        &[],
        &Value::Null,
    );
    assert_error(&response, 404, "NOT_FOUND");

    // The right token works, and neither it nor any near miss is ever logged.
    shop.put_product(&sku, 100, 1);
    let logs = shop.host.logs();
    assert!(!logs.is_empty(), "the host logged nothing at all");
    assert!(
        !logs.contains(ADMIN_TOKEN),
        "the admin token appears in the host's logs"
    );
}
