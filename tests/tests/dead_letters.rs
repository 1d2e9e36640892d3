//! Poison messages end to end: an event a consumer cannot apply (a trigger in its real SQLite
//! file refuses the write: inventory's reservation, notifications' key-value entry) is retried,
//! parked after `dead_letter_after` failures, listed at the admin route, does not block later
//! events, and is replayed: refused (409, still listed) while the cause remains, applied once
//! it is gone.

use serde_json::{json, Value};
use shop_e2e::{unique_sku, Shop, SETTLE};
use testkit::eventually;

fn dead_letters(shop: &Shop) -> Vec<Value> {
    dead_letters_of(shop, "inventory")
}

fn dead_letters_of(shop: &Shop, function: &str) -> Vec<Value> {
    let response = shop.admin("GET", &format!("/{function}/dead-letters"), &Value::Null);
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The one parked event: `kind` of order `order_id` from orders, parked after two failures
/// caused by the test's trigger.
fn the_parked_event<'a>(letters: &'a [Value], kind: &str, order_id: &str) -> &'a Value {
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(letter["source"], "orders");
    assert_eq!(letter["type"], kind);
    assert_eq!(letter["attempts"], 2);
    assert_eq!(letter["payload"]["data"]["order_id"], order_id);
    assert!(
        letter["error"].as_str().unwrap_or("").contains("poisoned"),
        "{letter}"
    );
    letter
}

#[test]
fn a_poison_event_is_parked_listed_skipped_and_replayed() {
    let shop = Shop::start_with(&[("dead_letter_after", "2")]);
    let poison = unique_sku("POISON");
    let good = unique_sku("GOOD");
    shop.put_product(&poison, 500, 5);
    shop.put_product(&good, 700, 5);
    let trigger = format!(
        "CREATE TRIGGER poison BEFORE INSERT ON reservations WHEN NEW.lines LIKE '%{poison}%' \
         BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END;"
    );
    shop.sqlite("inventory.db", &trigger);

    let stuck = shop.place_order("dl-1", &[(&poison, 1)], "tok_visa");
    // The next order's event finds the gap, retries the poison from the feed and parks it.
    let fine = shop.place_order("dl-2", &[(&good, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&fine)["status"], "confirmed");

    let letters = eventually(SETTLE, || {
        shop.sweep_all();
        Some(dead_letters(&shop)).filter(|l| !l.is_empty())
    })
    .unwrap_or_else(|| panic!("nothing parked\n{}", shop.logs_tail()));
    let letter = the_parked_event(&letters, "order-created", &stuck);
    assert_eq!(shop.order(&stuck)["status"], "pending");
    let seq = letter["seq"].as_i64().expect("seq");
    let replay = format!("/inventory/dead-letters/orders/{seq}/replay");

    let anonymous = shop.send("GET", "/inventory/dead-letters", &[], &Value::Null);
    assert_eq!(anonymous.status, 401);
    let missing = shop.admin(
        "POST",
        "/inventory/dead-letters/orders/999/replay",
        &json!({}),
    );
    assert_eq!(missing.status, 404, "{}", missing.body);

    let refused = shop.admin("POST", &replay, &Value::Null);
    assert_eq!(refused.status, 409, "{}", refused.body);
    let kept = dead_letters(&shop);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["attempts"], 3);

    shop.sqlite("inventory.db", "DROP TRIGGER poison;");
    let replayed = shop.admin("POST", &replay, &Value::Null);
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert!(dead_letters(&shop).is_empty());
    assert_eq!(shop.wait_final(&stuck)["status"], "confirmed");
    shop.check_invariants(&[stuck, fine]);
}

#[test]
fn a_notification_that_cannot_be_stored_is_parked_not_blocking_later_ones() {
    let shop = Shop::start_with(&[("dead_letter_after", "2")]);
    let sku = unique_sku("NOTE");
    shop.put_product(&sku, 300, 10);
    // Notifications' key-value store refuses the notification of one customer.
    let trigger = "CREATE TRIGGER poison BEFORE INSERT ON spin_key_value \
         WHEN NEW.key LIKE 'n:%' AND CAST(NEW.value AS TEXT) LIKE '%nd-poisoned%' \
         BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END;";
    shop.sqlite("notifications.db", trigger);

    let stuck = shop.place_order("nd-poisoned", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&stuck)["status"], "confirmed");
    let fine = shop.place_order("nd-fine", &[(&sku, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&fine)["status"], "confirmed");

    // The later order is notified although the earlier notification keeps failing.
    let notified = eventually(SETTLE, || {
        shop.sweep_all();
        (shop.notifications(&fine).len() == 1).then_some(())
    });
    assert!(
        notified.is_some(),
        "a poison event blocked notifications\n{}",
        shop.logs_tail()
    );
    let letters = dead_letters_of(&shop, "notifications");
    let letter = the_parked_event(&letters, "order-confirmed", &stuck);
    assert!(shop.notifications(&stuck).is_empty());
    let seq = letter["seq"].as_i64().expect("seq");
    let replay = format!("/notifications/dead-letters/orders/{seq}/replay");

    let anonymous = shop.send("POST", &replay, &[], &Value::Null);
    assert_eq!(anonymous.status, 401);
    let refused = shop.admin("POST", &replay, &Value::Null);
    assert_eq!(refused.status, 409, "{}", refused.body);
    let kept = dead_letters_of(&shop, "notifications");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["attempts"], 3);

    shop.sqlite("notifications.db", "DROP TRIGGER poison;");
    let replayed = shop.admin("POST", &replay, &Value::Null);
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert!(dead_letters_of(&shop, "notifications").is_empty());
    let again = shop.admin("POST", &replay, &Value::Null);
    assert_eq!(
        again.status, 404,
        "a replayed letter is gone: {}",
        again.body
    );
    shop.check_invariants(&[stuck, fine]);
}
