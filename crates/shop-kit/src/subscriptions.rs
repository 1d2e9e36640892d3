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
    use crate::stream::{channel, partitions};
    use std::collections::BTreeSet;

    /// Every binding spin.toml must have: each subscription for each partition, on the
    /// consumer's address for that partition, and each consumer's wake on an address of its
    /// own.
    fn expected() -> BTreeSet<(String, String, String)> {
        let mut all = BTreeSet::new();
        for (source, consumer) in SUBSCRIPTIONS {
            for p in partitions() {
                let address = format!("{{{{ redis_address }}}}?consumer={consumer}&partition={p}");
                all.insert((channel(source, p), consumer.to_string(), address));
            }
            let wake = format!("{{{{ redis_address }}}}?consumer={consumer}&wake=1");
            all.insert((crate::wake::channel(consumer), consumer.to_string(), wake));
        }
        all
    }

    #[test]
    fn the_table_is_exactly_the_redis_bindings_of_spin_toml() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../spin.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let manifest: toml::Table = text.parse().unwrap();
        let listed = manifest["trigger"]["redis"].as_array().unwrap();
        let bindings: BTreeSet<(String, String, String)> = listed
            .iter()
            .map(|t| {
                let field = |name: &str| t[name].as_str().unwrap().to_string();
                (field("channel"), field("component"), field("address"))
            })
            .collect();
        assert_eq!(bindings, expected());
        assert_eq!(listed.len(), bindings.len(), "a binding is listed twice");
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
