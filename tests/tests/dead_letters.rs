//! Poison messages end to end: an event a consumer cannot apply (a trigger in its real store
//! refuses the write: inventory's reservation in its SQL store, SQLite or PostgreSQL, and
//! notifications' key-value entry in its SQLite file) is retried
//! on its own schedule, parked after `dead_letter_after` failures with nothing calling the
//! sweep, listed at the admin route and in the order's history, does not block later events,
//! and is replayed by its id: refused (409, still listed) while the cause remains, applied once
//! it is gone.

use serde_json::{json, Value};
use shop_e2e::{unique_sku, Shop, POISONED, SETTLE};
use testkit::eventually;

fn dead_letters(shop: &Shop) -> Vec<Value> {
    shop.dead_letters("inventory")
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
        letter["error"].as_str().unwrap_or("").contains(POISONED),
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
    let poisoned = shop.poison_inserts("inventory", "reservations", "lines", &poison);

    let stuck = shop.place_order("dl-1", &[(&poison, 1)], "tok_visa");
    // The next order goes through while the poison is retried and parked.
    let fine = shop.place_order("dl-2", &[(&good, 1)], "tok_visa");
    assert_eq!(shop.wait_final(&fine)["status"], "confirmed");

    let letters = eventually(SETTLE, || {
        Some(dead_letters(&shop)).filter(|l| !l.is_empty())
    })
    .unwrap_or_else(|| panic!("nothing parked\n{}", shop.logs_tail()));
    let letter = the_parked_event(&letters, "order-created", &stuck);
    let id = letter["id"].as_str().expect("id");
    // Inventory told orders: the order's history names the parked event.
    let noted = eventually(SETTLE, || {
        let order = shop.order(&stuck);
        let history = order["history"].as_array().cloned().unwrap_or_default();
        history.into_iter().find(|s| s["reason"] == "event_parked")
    })
    .unwrap_or_else(|| panic!("no history step for the parked event\n{}", shop.logs_tail()));
    assert_eq!(noted["source"], "dead letter");
    let detail = noted["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("inventory") && detail.contains(id) && detail.contains(POISONED),
        "{noted}"
    );
    assert_eq!(shop.order(&stuck)["status"], "pending");
    let replay = format!("/inventory/dead-letters/{id}/replay");

    let anonymous = shop.send("GET", "/inventory/dead-letters", &[], &Value::Null);
    assert_eq!(anonymous.status, 401);
    let missing = shop.admin(
        "POST",
        "/inventory/dead-letters/no-such-event/replay",
        &json!({}),
    );
    assert_eq!(missing.status, 404, "{}", missing.body);

    let refused = shop.admin("POST", &replay, &Value::Null);
    assert_eq!(refused.status, 409, "{}", refused.body);
    let kept = dead_letters(&shop);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["attempts"], 3);

    shop.cure(poisoned);
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

    // The later order is notified although the earlier notification keeps failing, and the
    // poison is parked, with nothing calling the sweep.
    let notified = eventually(SETTLE, || {
        (shop.notifications(&fine).len() == 1).then_some(())
    });
    assert!(
        notified.is_some(),
        "a poison event blocked notifications\n{}",
        shop.logs_tail()
    );
    let letters = eventually(SETTLE, || {
        Some(shop.dead_letters("notifications")).filter(|l| !l.is_empty())
    })
    .unwrap_or_else(|| panic!("nothing parked\n{}", shop.logs_tail()));
    let letter = the_parked_event(&letters, "order-confirmed", &stuck);
    assert!(shop.notifications(&stuck).is_empty());
    let replay = format!(
        "/notifications/dead-letters/{}/replay",
        letter["id"].as_str().expect("id")
    );

    let anonymous = shop.send("POST", &replay, &[], &Value::Null);
    assert_eq!(anonymous.status, 401);
    let refused = shop.admin("POST", &replay, &Value::Null);
    assert_eq!(refused.status, 409, "{}", refused.body);
    let kept = shop.dead_letters("notifications");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["attempts"], 3);

    shop.sqlite("notifications.db", "DROP TRIGGER poison;");
    let replayed = shop.admin("POST", &replay, &Value::Null);
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert!(shop.dead_letters("notifications").is_empty());
    let again = shop.admin("POST", &replay, &Value::Null);
    assert_eq!(
        again.status, 404,
        "a replayed letter is gone: {}",
        again.body
    );
    shop.check_invariants(&[stuck, fine]);
}
