//! A clumsy admin's SQL store settings (docs/adr/0009): a mistyped `sql_store`, or PostgreSQL
//! chosen but unreachable. The SQL functions answer 503 `UNAVAILABLE` in the one error shape,
//! with the cause in the logs only (never a connection string's password), and the functions
//! that keep no SQL store go on serving.

use serde_json::Value;
use shop_e2e::{assert_error, order_body, Shop};
use testkit::free_port;

/// A request to each SQL function, which must open its store to answer.
fn sql_routes_answer_unavailable(shop: &Shop) {
    let placed = shop.post_order(
        &order_body("store-config", &[("any-sku", 1)], "tok_visa"),
        None,
    );
    assert_error(&placed, 503, "UNAVAILABLE");
    for path in [
        "/orders/00000000-0000-4000-8000-000000000000",
        "/inventory/products",
    ] {
        assert_error(&shop.host.get(path), 503, "UNAVAILABLE");
    }
    let payment = shop.admin(
        "GET",
        "/billing/payments/00000000-0000-4000-8000-000000000000",
        &Value::Null,
    );
    assert_error(&payment, 503, "UNAVAILABLE");
    // Notifications keeps a key-value store: untouched by the SQL setting.
    let listed = shop.host.get("/notifications?customer_id=store-config");
    assert_eq!(listed.status, 200, "{}", listed.body);
}

#[test]
fn a_mistyped_sql_store_is_refused_not_guessed() {
    let shop = Shop::start_with(&[("sql_store", "postgresql")]);
    sql_routes_answer_unavailable(&shop);
    let logs = shop.host.logs();
    assert!(
        logs.contains(r#"sql_store must be sqlite or postgres, not \"postgresql\""#),
        "the cause is not logged\n{}",
        shop.logs_tail()
    );
}

#[test]
fn an_unreachable_postgres_is_unavailable_and_its_password_is_never_logged() {
    let port = free_port();
    let password = "pw-never-logged-7f3a";
    let url = |db: &str| {
        format!(
            "host=127.0.0.1 port={port} user=shop password={password} dbname={db} sslmode=disable"
        )
    };
    let (orders, inventory, billing) = (url("orders"), url("inventory"), url("billing"));
    let origin = format!("postgres://127.0.0.1:{port}");
    let shop = Shop::start_with(&[
        ("sql_store", "postgres"),
        ("orders_postgres_url", &orders),
        ("inventory_postgres_url", &inventory),
        ("billing_postgres_url", &billing),
        ("postgres_origin", &origin),
    ]);
    sql_routes_answer_unavailable(&shop);
    let logs = shop.host.logs();
    assert!(
        logs.contains("opening the postgres database of orders"),
        "the cause is not logged\n{}",
        shop.logs_tail()
    );
    assert!(
        !logs.contains(password),
        "a connection string's password reached the logs"
    );
}
