//! The saga of ARCHITECTURE.md §4 end to end: real host, real Redis, real components, real
//! SQLite files; each test checks the §4 invariants for every order it touched.

use serde_json::json;
use shop_e2e::{assert_error, order_body, unique_key, unique_sku, Shop};

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
    let history: Vec<&str> = order["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|step| step["status"].as_str())
        .collect();
    assert_eq!(history, ["pending", "reserved", "confirmed"]);
    let payment = shop.payment(&id).expect("payment of a confirmed order");
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["amount_cents"], 3750);
    let product = shop.product(&sku);
    assert_eq!((product["available"].as_i64(), product["reserved"].as_i64()), (Some(7), Some(0)));
    shop.check_invariants(&[id]);
}
