//! Streams: each source's events are split, for each consumer, into [`PARTITIONS`] streams by
//! order id, so that one order's events stay in order while different orders' events are
//! delivered and applied side by side. A stream holds only the event types its consumer takes
//! (`subscriptions`). Each stream has its own gap-free sequence, its own Redis channel and, on
//! the consumer side, its own Redis subscription (Spin handles one message at a time per
//! subscription). See docs/adr/0006 and 0010.

/// Streams per source. spin.toml binds each consumer to every partition's channel, one
/// subscription address per partition; a unit test holds the two together.
pub const PARTITIONS: i64 = 4;

/// The partition of an order: FNV-1a (32 bit) of its id, modulo [`PARTITIONS`]. Written here
/// because the mapping is part of the wire contract and must never change with a crate
/// version; it is four lines.
pub fn partition_of(order_id: &str) -> i64 {
    let hash = order_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    i64::from(hash) % PARTITIONS
}

/// The Redis channel of one stream: `shop.<source>.<consumer>.<partition>`.
pub fn channel(source: &str, consumer: &str, partition: i64) -> String {
    format!("shop.{source}.{consumer}.{partition}")
}

/// Every partition, in order.
pub fn partitions() -> impl Iterator<Item = i64> {
    0..PARTITIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_is_stable_and_spreads_orders() {
        // Fixed values: the mapping is a wire contract between producers and consumers.
        assert_eq!(partition_of(""), 0x811c_9dc5 % PARTITIONS);
        assert_eq!(partition_of("a"), 0xe40c_292c % PARTITIONS);
        let mut counts = [0; PARTITIONS as usize];
        for n in 0..1000 {
            counts[partition_of(&format!("019a-{n:04}")) as usize] += 1;
        }
        assert!(counts.iter().all(|c| *c > 150), "{counts:?}");
    }

    #[test]
    fn each_stream_has_its_channel() {
        assert_eq!(channel("orders", "billing", 3), "shop.orders.billing.3");
        assert_eq!(partitions().count() as i64, PARTITIONS);
    }
}
