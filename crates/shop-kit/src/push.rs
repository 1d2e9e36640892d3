//! Event delivery over HTTP (`event_delivery = "http"`), for platforms without Spin's Redis
//! trigger: the relay POSTs each consumer's copy of each outbox event to that consumer's
//! `POST /<consumer>/events/deliveries` on `app_base_url`, with the delivery bearer token, and
//! marks the event published once every consumer that takes it accepted its copy. The route
//! (`component`) runs what a Redis message runs. Delivery is at-least-once; the consumers' inbox ignores repeats. A
//! consumer accepts an event it cannot apply yet (it keeps it pending), so one order's
//! trouble never holds back the others. See docs/adr/0004 and 0006.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};
use spin_sdk::http::Request;

use crate::log::Logger;
use crate::sql::Db;
use crate::{config, outbound, outbox, ApiError, Envelope};

/// Events pushed per publish; the rest go with the next publish or sweep.
const BATCH: i64 = 200;
/// How long one delivery may take: the consumer answers after applying the event, which for
/// billing includes the payment provider's calls and their retries.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pushes each consumer's copy of `source`'s unpublished events, oldest first, and marks the
/// events published up to the last one whose consumers all accepted it. A consumer that
/// refuses (it is down, or cannot record the event) ends the round after the other copies of
/// that event; it fills the gap from the feed when it gets later copies. Fails when any consumer refused, so
/// that the publish is retried.
pub async fn publish(db: &Db, source: &str, log: &Logger) -> anyhow::Result<usize> {
    let copies = outbox::unpublished(db, source, BATCH)?;
    let keys = config::internal_keys();
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    let mut done = 0;
    for (n, row) in copies.iter().enumerate() {
        // The first event with a refused copy ends the round, once all its copies were tried.
        if !refused.is_empty() && copies[done].position != row.position {
            break;
        }
        if !row.env.consumer.is_empty() {
            let mut env = row.env.clone();
            if let Some(keys) = &keys {
                keys.sign(&mut env);
            }
            let body = serde_json::to_vec(&env)?;
            let sent = send(&env.consumer, "events/deliveries", body, &env.traceparent);
            if let Err(e) = sent.await {
                refused.insert(env.consumer.clone(), format!("{e:#}"));
            }
        }
        if refused.is_empty() {
            done = n + 1;
        }
    }
    let delivered = outbox::sent_through(&copies, done);
    if let Some(last) = delivered {
        outbox::mark_published(db, last)?;
    }
    for (consumer, error) in &refused {
        log.info(
            &format!("delivering {source} events to {consumer}: {error}"),
            None,
        );
    }
    anyhow::ensure!(
        refused.is_empty(),
        "{done} of {} copies of events delivered",
        copies.len()
    );
    Ok(done)
}

/// Sends the wake (see `wake`) to `consumer`'s `POST /<consumer>/events/wake`.
pub async fn wake(consumer: &str, arm: &str) -> anyhow::Result<()> {
    let traceparent = crate::TraceContext::new_root().header();
    send(
        consumer,
        "events/wake",
        crate::wake::message(arm),
        &traceparent,
    )
    .await
}

/// POSTs `body` to `{app_base_url}/<consumer>/<path>` with the delivery token.
async fn send(consumer: &str, path: &str, body: Vec<u8>, traceparent: &str) -> anyhow::Result<()> {
    let url = format!(
        "{}/{consumer}/{path}",
        config::app_base_url().trim_end_matches('/')
    );
    let request = Request::post(&url, body)
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!("Bearer {}", config::delivery_token()),
        )
        .header("traceparent", traceparent)
        .build();
    let response = outbound::send(request, DELIVERY_TIMEOUT).await?;
    let status = *response.status();
    anyhow::ensure!(
        (200..300).contains(&status),
        "POST {url}: {status} {}",
        String::from_utf8_lossy(response.body())
    );
    Ok(())
}

/// Checks a delivered body: exactly the envelope's fields, a source `upstream` names, a
/// partition that exists, a positive seq and a payload of its type.
pub fn envelope(body: Map<String, Value>, upstream: &[&str]) -> Result<Envelope, ApiError> {
    if let Some(field) = body
        .keys()
        .find(|k| !crate::envelope::FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::invalid(field, "unknown field"));
    }
    let env: Envelope =
        serde_json::from_value(Value::Object(body)).map_err(|e| ApiError::invalid("body", e))?;
    if !upstream.contains(&env.source.as_str()) {
        return Err(ApiError::invalid(
            "source",
            format!("must be one of {}", upstream.join(", ")),
        ));
    }
    if !(0..crate::stream::PARTITIONS).contains(&env.partition) {
        return Err(ApiError::invalid(
            "partition",
            format!("must be between 0 and {}", crate::stream::PARTITIONS - 1),
        ));
    }
    if env.seq < 1 {
        return Err(ApiError::invalid("seq", "must be at least 1"));
    }
    env.event().map_err(|e| ApiError::invalid("data", e))?;
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shop_events::{ShopEvent, StockRejected};

    fn body(source: &str, seq: i64) -> Map<String, Value> {
        let event = ShopEvent::StockRejected(StockRejected {
            order_id: "o1".into(),
            sku: "A".into(),
            reason: "insufficient_stock".into(),
        });
        let env = Envelope {
            seq,
            ..Envelope::wrap(source, "orders", 1, &event)
        };
        match serde_json::to_value(env).unwrap() {
            Value::Object(map) => map,
            other => panic!("{other}"),
        }
    }

    fn refused(body: Map<String, Value>) -> String {
        envelope(body, &["inventory"]).unwrap_err().message
    }

    #[test]
    fn a_well_formed_envelope_from_an_upstream_source_is_accepted() {
        let env = envelope(body("inventory", 3), &["inventory"]).unwrap();
        assert_eq!((env.source.as_str(), env.seq), ("inventory", 3));
    }

    #[test]
    fn bad_envelopes_name_the_offending_field() {
        assert!(refused(body("orders", 1)).starts_with("source:"));
        assert!(refused(body("inventory", 0)).starts_with("seq:"));
        let mut far = body("inventory", 1);
        far.insert("partition".into(), json!(9));
        assert!(refused(far).starts_with("partition:"));
        let mut extra = body("inventory", 1);
        extra.insert("extra".into(), json!(1));
        assert!(refused(extra).starts_with("extra:"));
        let mut wrong_data = body("inventory", 1);
        wrong_data.insert("data".into(), json!({"order_id": 5}));
        assert!(refused(wrong_data).starts_with("data:"));
        let mut missing = body("inventory", 1);
        missing.remove("seq");
        assert!(refused(missing).starts_with("body:"));
    }
}
