//! Who consumes which source: the one table both delivery modes follow. In `redis` mode
//! spin.toml's `[[trigger.redis]]` bindings must say the same (a unit test compares them); in
//! `http` mode the relay pushes each event to exactly these consumers.

/// `(source, consumer)`: `consumer` applies the events of `source` (channel `shop.<source>`).
pub const SUBSCRIPTIONS: &[(&str, &str)] = &[
    ("inventory", "orders"),
    ("billing", "orders"),
    ("orders", "inventory"),
    ("billing", "inventory"),
    ("inventory", "billing"),
    ("orders", "billing"),
    ("orders", "notifications"),
];

/// The consumers of `source`'s events.
pub fn subscribers(source: &str) -> impl Iterator<Item = &'static str> + '_ {
    SUBSCRIPTIONS
        .iter()
        .filter(move |(s, _)| *s == source)
        .map(|(_, consumer)| *consumer)
}

/// The sources `consumer` applies events of, in table order.
pub fn upstream(consumer: &str) -> Vec<&'static str> {
    SUBSCRIPTIONS
        .iter()
        .filter(|(_, c)| *c == consumer)
        .map(|(source, _)| *source)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::channel;
    use std::collections::BTreeSet;

    #[test]
    fn the_table_is_exactly_the_redis_bindings_of_spin_toml() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../spin.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let manifest: toml::Table = text.parse().unwrap();
        let bindings: BTreeSet<(String, String)> = manifest["trigger"]["redis"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let channel = t["channel"].as_str().unwrap().to_string();
                (channel, t["component"].as_str().unwrap().to_string())
            })
            .collect();
        let table: BTreeSet<(String, String)> = SUBSCRIPTIONS
            .iter()
            .map(|(source, consumer)| (channel(source), consumer.to_string()))
            .collect();
        assert_eq!(table, bindings);
        assert_eq!(
            table.len(),
            SUBSCRIPTIONS.len(),
            "a subscription is listed twice"
        );
    }

    #[test]
    fn subscribers_and_upstream_read_the_table_both_ways() {
        assert_eq!(
            subscribers("orders").collect::<Vec<_>>(),
            ["inventory", "billing", "notifications"]
        );
        assert_eq!(upstream("billing"), ["inventory", "orders"]);
        assert!(upstream("payment-sim").is_empty());
    }
}
