//! Injection strings through every parameter of the public API: path ids, SKUs,
//! customer ids, query parameters, body fields and the idempotency header. Each one is refused
//! with the one error shape (400 or 404), and afterwards every store reads exactly as before.

use serde_json::{json, Value};
use shop_e2e::{order_body, public_state, unique_key, unique_sku, Shop, ADMIN_TOKEN, PROVIDER_KEY};
use testkit::HttpResponse;

/// SQL and path tricks, unicode, a NUL byte and a very long string. Each holds a character a
/// valid id never has (a space, a quote, non-ASCII), so none of them is accidentally valid.
fn payloads() -> Vec<String> {
    vec![
        "' OR 1=1 --".into(),
        "\"; DROP TABLE orders; --".into(),
        "1; DELETE FROM products WHERE 1=1".into(),
        "x' UNION SELECT sql FROM sqlite_master --".into(),
        "'); UPDATE products SET available = 0; --".into(),
        "Ω≈ç√ ' OR ''='".into(),
        "nul\u{0} byte'".into(),
        "../../ etc/passwd".into(),
        "%27%20OR%201%3D1 '".into(),
        "' OR 1=1 -- ".repeat(400),
    ]
}

/// Percent-encodes everything but unreserved characters, for paths and query strings.
fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asserts a refusal: 400 or 404, with the error shape and the code that goes with the status.
fn assert_refused(what: &str, response: &HttpResponse) {
    let code = match response.status {
        400 => "INVALID_ARGUMENT",
        404 => "NOT_FOUND",
        other => panic!(
            "{what}: expected 400 or 404, got {other}: {}",
            response.body
        ),
    };
    let body = response.json();
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: error without a message: {body}"
    );
    assert!(
        body["error"]["service"].is_string(),
        "{what}: error without its service: {body}"
    );
}

#[test]
fn injection_strings_in_every_parameter_are_refused_and_change_nothing() {
    let shop = Shop::start();
    let sku = unique_sku("INJ");
    shop.put_product(&sku, 500, 5);
    let customer = "inj-customer";
    let id = shop.place_order(customer, &[(&sku, 1)], "tok_visa");
    shop.wait_final(&id);
    let before = public_state(&shop, customer);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let admin = [("authorization", bearer.as_str())];
    // Each route with the credential it takes, so that the payload is what gets refused.
    let provider_bearer = format!("Bearer {PROVIDER_KEY}");
    let credential = |path: &str| {
        if path.starts_with("/payment-sim/") {
            vec![("authorization", provider_bearer.as_str())]
        } else {
            Vec::new()
        }
    };

    for payload in payloads() {
        let p = encode(&payload);
        let short: String = payload.chars().take(24).collect();

        // Path parameters.
        for (method, path) in [
            ("GET", format!("/orders/{p}")),
            ("POST", format!("/orders/{p}/cancel")),
            ("GET", format!("/inventory/products/{p}")),
            ("GET", format!("/billing/payments/{p}")),
            ("GET", format!("/payment-sim/charges/{p}")),
        ] {
            let response = shop.send(method, &path, &credential(&path), &Value::Null);
            assert_refused(&format!("{method} {path:.60}"), &response);
        }
        let product = json!({"name": "injected", "price_cents": 1, "available": 1});
        let path = format!("/inventory/products/{p}");
        let response = shop.send("PUT", &path, &admin, &product);
        assert_refused(&format!("PUT {path:.60}"), &response);

        // Query parameters.
        for path in [
            format!("/orders?status={p}"),
            format!("/orders?cursor={p}"),
            format!("/orders?limit={p}"),
            format!("/orders?customer_id={p}"),
            format!("/notifications?order_id={p}"),
            format!("/notifications?customer_id={p}"),
            format!("/orders/events?after={p}"),
            format!("/inventory/events?limit={p}"),
            format!("/billing/events?after={p}"),
            format!("/notifications/events?limit={p}"),
        ] {
            // The feeds are for admins (and consumers); the other lists answer anyone.
            let response = shop.send("GET", &path, &admin, &Value::Null);
            assert_refused(&format!("GET {path:.60}"), &response);
        }

        // Body fields.
        let mut bodies = vec![
            ("/orders", order_body(&payload, &[(&sku, 1)], "tok_visa")),
            (
                "/orders",
                order_body(customer, &[(&payload, 1)], "tok_visa"),
            ),
            ("/orders", order_body(customer, &[(&sku, 1)], &payload)),
        ];
        for field in ["currency", "token", "idempotency_key"] {
            let mut charge = json!({"amount_cents": 100, "currency": "EUR", "token": "tok_visa", "idempotency_key": unique_key()});
            charge[field] = json!(payload);
            bodies.push(("/payment-sim/charges", charge));
        }
        for field in ["provider_ref", "idempotency_key"] {
            let mut refund = json!({"provider_ref": "pr-none", "amount_cents": 1, "idempotency_key": unique_key()});
            refund[field] = json!(payload);
            bodies.push(("/payment-sim/refunds", refund));
        }
        for (path, body) in bodies {
            let key = unique_key();
            let mut headers = credential(path);
            headers.push(("idempotency-key", &key));
            let response = shop.send("POST", path, &headers, &body);
            assert_refused(&format!("POST {path} with {short:?}"), &response);
        }
        for field in ["fail_rate", "latency_ms", "down"] {
            let response = shop.send(
                "PUT",
                "/payment-sim/faults",
                &admin,
                &json!({field: payload}),
            );
            assert_refused(&format!("PUT faults {field}={short:?}"), &response);
        }

        // The idempotency header (header values must be visible ASCII, spaces or tabs).
        if payload.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            let body = order_body(customer, &[(&sku, 1)], "tok_visa");
            let response = shop.send("POST", "/orders", &[("idempotency-key", &payload)], &body);
            assert_refused(&format!("Idempotency-Key {short:?}"), &response);
        }
    }

    let after = public_state(&shop, customer);
    assert_eq!(before, after, "a refused request changed a store");
    let product = shop.product(&sku);
    assert_eq!(product["name"], format!("Product {sku}"));
}
