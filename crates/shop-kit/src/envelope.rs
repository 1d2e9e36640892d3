//! The event envelope `{id, type, source, consumer, partition, seq, occurred_at, traceparent,
//! data, mac}`.

use serde::{Deserialize, Serialize};
use shop_events::{DecodeError, ShopEvent};

/// Events per message at most. A relay page with several copies for one consumer stream (a
/// backlog, or the events of an instance that applied a batch) sends them as one message, which
/// one instance of the consumer applies in turn (ADR 0012); a single copy goes as it always
/// did. A longer batch is none of the shop's and is refused whole.
pub const BATCH: usize = 50;

/// The envelope's fields as they appear in JSON.
pub const FIELDS: [&str; 10] = [
    "id",
    "type",
    "source",
    "consumer",
    "partition",
    "seq",
    "occurred_at",
    "traceparent",
    "data",
    "mac",
];

/// One event as published on `shop.<source>.<consumer>.<partition>` and served by
/// `GET /<source>/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// The producing function (`orders`, `inventory`, `billing`).
    pub source: String,
    /// The consumer this copy is addressed to: `seq` numbers the event in that consumer's
    /// stream, so a copy is refused by any other consumer. Empty outside a stream (the
    /// producer's own store, the whole-outbox feed).
    #[serde(default)]
    pub consumer: String,
    /// The stream of its source the event belongs to: `stream::partition_of` its order id.
    pub partition: i64,
    /// Gap-free sequence number within `(source, consumer, partition)`, starting at 1; in the
    /// whole-outbox feed, the event's position in its source's outbox.
    pub seq: i64,
    pub occurred_at: String,
    pub traceparent: String,
    pub data: serde_json::Value,
    /// HMAC-SHA256 of the rest, in hex, set as the event leaves its producer (`seal`); empty
    /// inside the producer's own store.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

/// One outbox row, or one consumer's copy of it: where it stands in its source's whole outbox,
/// and the event (`env.consumer` empty for the row itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub position: i64,
    pub env: Envelope,
}

impl Envelope {
    /// Wraps an event as `source` would send it to `consumer` as the `seq`-th event of that
    /// consumer's stream of the event's partition, in a new trace.
    pub fn wrap(source: &str, consumer: &str, seq: i64, event: &ShopEvent) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            type_name: event.type_name().to_string(),
            source: source.to_string(),
            consumer: consumer.to_string(),
            partition: crate::stream::partition_of(event.order_id()),
            seq,
            occurred_at: crate::time::now_rfc3339(),
            traceparent: crate::TraceContext::new_root().header(),
            data: event.data(),
            mac: String::new(),
        }
    }

    /// The typed payload.
    pub fn event(&self) -> Result<ShopEvent, DecodeError> {
        ShopEvent::decode(&self.type_name, self.data.clone())
    }

    /// The order the event is about: the key that orders its stream. Empty when the payload
    /// names none (a malformed event), which still gives it a key of its own.
    pub fn order_id(&self) -> &str {
        self.data
            .get("order_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }

    /// `source>consumer/partition#seq`, how logs and errors name the event.
    pub fn label(&self) -> String {
        format!(
            "{} {}>{}/{}#{}",
            self.type_name, self.source, self.consumer, self.partition, self.seq
        )
    }

    /// Parses a message received on a channel.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The events of a message received on a consumer's stream channel: one envelope (a JSON
    /// object) or a batch of at most [`BATCH`] (an array), the envelopes of a batch each parsed
    /// on its own so that a malformed one does not take the others with it. Fails when the
    /// message is neither one envelope nor such an array.
    pub fn batch_from_bytes(bytes: &[u8]) -> anyhow::Result<Vec<anyhow::Result<Self>>> {
        if bytes.trim_ascii_start().first() != Some(&b'[') {
            // The common case, parsed straight into the envelope.
            return Ok(vec![Ok(Self::from_bytes(bytes)?)]);
        }
        let items: Vec<serde_json::Value> = serde_json::from_slice(bytes)?;
        anyhow::ensure!(
            items.len() <= BATCH,
            "a batch of {} events, more than the {BATCH} a message carries",
            items.len()
        );
        Ok(items
            .into_iter()
            .map(|v| Ok(serde_json::from_value(v)?))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_events::StockRejected;

    #[test]
    fn the_envelope_has_the_documented_fields() {
        let event = ShopEvent::StockRejected(StockRejected {
            order_id: "o1".into(),
            sku: "A".into(),
            reason: "insufficient_stock".into(),
        });
        let env = Envelope {
            id: "e1".into(),
            type_name: event.type_name().into(),
            source: "inventory".into(),
            consumer: "orders".into(),
            partition: 2,
            seq: 7,
            occurred_at: "2026-01-01T00:00:00.000Z".into(),
            traceparent: "tp".into(),
            data: event.data(),
            mac: "00".into(),
        };
        let json = serde_json::to_value(&env).unwrap();
        for field in FIELDS {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        assert_eq!(json["type"], "stock-rejected");
        let back = Envelope::from_bytes(json.to_string().as_bytes()).unwrap();
        assert_eq!(back.event().unwrap(), event);
        assert_eq!(back.order_id(), "o1");
    }

    #[test]
    fn a_message_holds_one_envelope_or_a_batch() {
        let env = crate::testing::envelope(3);
        let one = serde_json::to_vec(&env).unwrap();
        let parsed = Envelope::batch_from_bytes(&one).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].as_ref().unwrap(), &env);

        let mut batch = serde_json::to_value([&env, &crate::testing::envelope(4)]).unwrap();
        batch
            .as_array_mut()
            .unwrap()
            .insert(1, serde_json::json!({"id": "bad"}));
        let parsed = Envelope::batch_from_bytes(batch.to_string().as_bytes()).unwrap();
        let seqs: Vec<Option<i64>> = parsed
            .iter()
            .map(|e| e.as_ref().ok().map(|e| e.seq))
            .collect();
        assert_eq!(seqs, [Some(3), None, Some(4)]);

        let too_many = serde_json::to_vec(&vec![&env; BATCH + 1]).unwrap();
        assert!(Envelope::batch_from_bytes(&too_many).is_err());
        let full = serde_json::to_vec(&vec![&env; BATCH]).unwrap();
        assert_eq!(Envelope::batch_from_bytes(&full).unwrap().len(), BATCH);
        assert!(Envelope::batch_from_bytes(b"[not json").is_err());
        assert!(Envelope::batch_from_bytes(b"not json").is_err());
        assert!(Envelope::batch_from_bytes(b"{\"id\": \"bad\"}").is_err());
    }
}
