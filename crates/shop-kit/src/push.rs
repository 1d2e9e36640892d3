//! Event delivery over HTTP (`event_delivery = "http"`), for platforms without Spin's Redis
//! trigger: the relay POSTs each outbox event to every subscriber's
//! `POST /<consumer>/events/deliveries` on `app_base_url`, with the delivery bearer token, and
//! marks it published once every subscriber accepted it. The route runs what a Redis message
//! runs. Delivery is at-least-once; the consumers' inbox ignores repeats. See docs/adr/0004.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use spin_sdk::http::{Request, Response};

use crate::consume::Consumer;
use crate::log::Logger;
use crate::sqlite::Db;
use crate::subscriptions::{subscribers, upstream};
use crate::web::{self, Ctx};
use crate::{config, outbound, outbox, relay, ApiError, Envelope, Failure};

/// Events pushed per publish; the rest go with the next publish or sweep.
const BATCH: i64 = 200;
/// How long one delivery may take: the consumer answers after applying the event, which for
/// billing includes the payment provider's calls and their retries.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pushes `source`'s unpublished events, oldest first, to every subscriber, and marks them
/// published up to the last one all subscribers accepted. A subscriber that refuses is not
/// sent later events in this round (it fills the gap from the feed when it gets them again).
pub async fn publish(db: &Db, source: &str, log: &Logger) -> anyhow::Result<usize> {
    let pending = outbox::unpublished(db, source, BATCH)?;
    let mut refused: BTreeMap<&str, String> = BTreeMap::new();
    let mut delivered = 0;
    for env in &pending {
        for consumer in subscribers(source) {
            if refused.contains_key(consumer) {
                continue;
            }
            if let Err(e) = post(consumer, env).await {
                refused.insert(consumer, format!("{e:#}"));
            }
        }
        if !refused.is_empty() {
            break;
        }
        delivered += 1;
    }
    if let Some(last) = pending[..delivered].last() {
        outbox::mark_published(db, last.seq)?;
    }
    for (consumer, error) in &refused {
        log.warn(
            &format!("delivering {source} events to {consumer} deferred: {error}"),
            None,
        );
    }
    Ok(delivered)
}

async fn post(consumer: &str, env: &Envelope) -> anyhow::Result<()> {
    let url = format!(
        "{}/{consumer}/events/deliveries",
        config::app_base_url().trim_end_matches('/')
    );
    let request = Request::post(&url, serde_json::to_vec(env)?)
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!("Bearer {}", config::delivery_token()),
        )
        .header("traceparent", &env.traceparent)
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

/// `POST /<consumer>/events/deliveries` (delivery token): applies one event exactly as a
/// Redis message would be applied, gap filling included, and publishes the consumer's own
/// outbox after the response. Answers 200 once the event is applied (or was already), and
/// 503 when it could not be applied yet, so that the producer keeps it for a later attempt.
pub async fn receive(
    ctx: &Ctx,
    req: &Request,
    consumer: &impl Consumer,
) -> Result<Response, Failure> {
    crate::auth::check_bearer(web::header(req, "authorization"), &config::delivery_token())?;
    let env = envelope(web::json_object(req)?, &upstream(ctx.service))?;
    // Gap filling may apply earlier events even when this one fails: publish what they caused.
    ctx.publish_after_response();
    relay::apply(ctx.service, &env, consumer)
        .await
        .map_err(|e| {
            ApiError::unavailable(format!(
                "{} #{} from {} not applied yet: {e:#}",
                env.type_name, env.seq, env.source
            ))
        })?;
    Ok(web::json(
        200,
        &json!({"delivered": {"source": env.source, "seq": env.seq}}),
    ))
}

/// Checks a delivered body: exactly the envelope's fields, a source `upstream` names, a
/// positive seq and a payload of its type.
fn envelope(body: Map<String, Value>, upstream: &[&str]) -> Result<Envelope, ApiError> {
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
    if env.seq < 1 {
        return Err(ApiError::invalid("seq", "must be at least 1"));
    }
    env.event().map_err(|e| ApiError::invalid("data", e))?;
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_events::{ShopEvent, StockRejected};

    fn body(source: &str, seq: i64) -> Map<String, Value> {
        let event = ShopEvent::StockRejected(StockRejected {
            order_id: "o1".into(),
            sku: "A".into(),
            reason: "insufficient_stock".into(),
        });
        let env = Envelope {
            seq,
            ..Envelope::wrap(source, 1, &event)
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
