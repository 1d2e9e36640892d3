//! The event plumbing every function's transport shares: applying one delivered event,
//! handing the outbox to the consumers after commit (Redis or HTTP, by `event_delivery`), and
//! the catch-up sweep.

use crate::config::{self, EventDelivery};
use crate::consume::{catch_up_all, deliver, Consumer};
use crate::envelope::channel;
use crate::feed::HttpFeed;
use crate::log::Logger;
use crate::sqlite::Db;
use crate::web::Ctx;
use crate::{outbox, push, Envelope, TraceContext};

fn feed(trace: &TraceContext) -> HttpFeed {
    HttpFeed {
        base_url: config::app_base_url(),
        traceparent: trace.child().header(),
    }
}

fn logger(service: &'static str, env: &Envelope) -> (TraceContext, Logger) {
    let trace = TraceContext::from_header(Some(&env.traceparent));
    let log = Logger::new(service, &trace.trace_id);
    (trace, log)
}

/// Hands `service`'s unpublished outbox rows to their consumers; failures are logged and the
/// rows left for the next publish or the sweep. Returns how many went out.
pub async fn publish(service: &str, db: &Db, log: &Logger) -> usize {
    let result = match config::event_delivery() {
        EventDelivery::Redis => outbox::publish_to_redis(db, service, &config::redis_address()),
        EventDelivery::Http => push::publish(db, service, log).await,
    };
    result.unwrap_or_else(|e| {
        log.warn(
            &format!("publishing to {} deferred: {e:#}", channel(service)),
            None,
        );
        0
    })
}

/// Applies one delivered event (filling any gap from the producer's feed) and logs the
/// outcome; the same path for a Redis message and an HTTP delivery.
pub async fn apply(
    service: &'static str,
    env: &Envelope,
    consumer: &impl Consumer,
) -> anyhow::Result<()> {
    let (trace, log) = logger(service, env);
    let order_id = env.data.get("order_id").and_then(|v| v.as_str());
    let what = format!("{} #{} from {}", env.type_name, env.seq, env.source);
    let result = deliver(consumer, &feed(&trace), env).await;
    match &result {
        Ok(()) => log.info(&format!("{what} handled"), order_id),
        Err(e) => log.error(&format!("{what} not applied: {e:#}"), order_id),
    }
    result
}

/// Handles one message of an upstream channel: applies it, then publishes what that
/// produced. A failure is logged, not retried here: the next message or the sweep picks the
/// event up again from the feed.
pub async fn on_message(
    service: &'static str,
    payload: &[u8],
    consumer: &impl Consumer,
    outbox_db: Option<&Db>,
) -> anyhow::Result<()> {
    let env = Envelope::from_bytes(payload)?;
    let _ = apply(service, &env, consumer).await;
    if let Some(db) = outbox_db {
        publish(service, db, &logger(service, &env).1).await;
    }
    Ok(())
}

/// The catch-up half of `POST /<fn>/sweep`: pulls every upstream feed (see `subscriptions`)
/// from where this consumer stands. Returns a report per source.
pub async fn catch_up(ctx: &Ctx, consumer: &impl Consumer) -> serde_json::Value {
    let upstream = crate::subscriptions::upstream(ctx.service);
    catch_up_all(consumer, &feed(&ctx.trace), &upstream).await
}
