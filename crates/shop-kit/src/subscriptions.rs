//! Who consumes which events of which source: the one table both delivery modes follow. A
//! producer numbers and sends each event only to the consumers that take its type, each on a
//! stream of its own (`stream`), so no instance runs for an event its consumer ignores. In
//! `redis` mode spin.toml's `[[trigger.redis]]` bindings must say the same (a unit test compares
//! them); in `http` mode the relay pushes each event to exactly these consumers.

/// One source's events that one consumer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub source: &'static str,
    pub consumer: &'static str,
    /// The event types it takes; its service ignores every other type of the source.
    pub types: &'static [&'static str],
}

const fn sub(
    source: &'static str,
    consumer: &'static str,
    types: &'static [&'static str],
) -> Subscription {
    Subscription {
        source,
        consumer,
        types,
    }
}

pub const SUBSCRIPTIONS: &[Subscription] = &[
    sub(
        "inventory",
        "orders",
        &["stock-reserved", "stock-rejected", "event-parked"],
    ),
    sub(
        "billing",
        "orders",
        &["payment-captured", "payment-declined", "event-parked"],
    ),
    sub("orders", "inventory", &["order-created", "order-cancelled"]),
    sub(
        "billing",
        "inventory",
        &["payment-captured", "payment-declined"],
    ),
    sub("inventory", "billing", &["stock-reserved"]),
    sub("orders", "billing", &["order-cancelled"]),
    sub(
        "orders",
        "notifications",
        &["order-confirmed", "order-cancelled"],
    ),
];

/// The consumers of `source`'s events, of any type.
pub fn subscribers(source: &str) -> impl Iterator<Item = &'static str> + '_ {
    SUBSCRIPTIONS
        .iter()
        .filter(move |s| s.source == source)
        .map(|s| s.consumer)
}

/// The consumers that take `source`'s events of type `type_name`: the streams it is numbered in.
pub fn takers<'a>(source: &'a str, type_name: &'a str) -> impl Iterator<Item = &'static str> + 'a {
    SUBSCRIPTIONS
        .iter()
        .filter(move |s| s.source == source && s.types.contains(&type_name))
        .map(|s| s.consumer)
}

/// The sources `consumer` applies events of, in table order.
pub fn upstream(consumer: &str) -> Vec<&'static str> {
    SUBSCRIPTIONS
        .iter()
        .filter(|s| s.consumer == consumer)
        .map(|s| s.source)
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
        for Subscription {
            source, consumer, ..
        } in SUBSCRIPTIONS
        {
            for p in partitions() {
                let address = format!("{{{{ redis_address }}}}?consumer={consumer}&partition={p}");
                all.insert((channel(source, consumer, p), consumer.to_string(), address));
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

    #[test]
    fn an_event_goes_only_to_the_consumers_that_take_its_type() {
        let of = |source, type_name| takers(source, type_name).collect::<Vec<_>>();
        assert_eq!(of("orders", "order-created"), ["inventory"]);
        assert_eq!(
            of("orders", "order-cancelled"),
            ["inventory", "billing", "notifications"]
        );
        assert_eq!(of("orders", "order-confirmed"), ["notifications"]);
        assert_eq!(of("inventory", "stock-reserved"), ["orders", "billing"]);
        assert!(of("billing", "payment-refunded").is_empty());
    }

    #[test]
    fn every_type_a_subscription_names_exists_and_is_its_sources() {
        use shop_events::ShopEvent;
        let produced = [
            (
                "orders",
                &["order-created", "order-confirmed", "order-cancelled"][..],
            ),
            (
                "inventory",
                &["stock-reserved", "stock-rejected", "event-parked"],
            ),
            (
                "billing",
                &[
                    "payment-captured",
                    "payment-declined",
                    "payment-refunded",
                    "event-parked",
                ],
            ),
        ];
        for s in SUBSCRIPTIONS {
            let (_, types) = produced.iter().find(|(p, _)| *p == s.source).unwrap();
            for t in s.types {
                assert!(types.contains(t), "{} does not produce {t}", s.source);
                assert!(ShopEvent::decode(t, serde_json::Value::Null)
                    .is_err_and(|e| !e.to_string().contains("unknown event type")));
            }
        }
    }
}
