//! The event plumbing every function's transport shares: handling one channel message,
//! publishing the outbox after commit, and the catch-up sweep.

use crate::consume::{catch_up_all, deliver, Consumer};
use crate::feed::HttpFeed;
use crate::log::Logger;
use crate::sqlite::Db;
use crate::web::Ctx;
use crate::{config, outbox, Envelope, TraceContext};

fn feed(trace: &TraceContext) -> HttpFeed {
    HttpFeed {
        base_url: config::app_base_url(),
        traceparent: trace.child().header(),
    }
}

/// Publishes `service`'s unpublished outbox rows; failures are left for the sweep.
pub fn publish(service: &str, db: &Db, log: &Logger) -> usize {
    outbox::publish_pending(db, service, &config::redis_address(), log)
}

/// Handles one message of an upstream channel: applies it (filling any gap from the
/// producer's feed), then publishes what that produced. A failure is logged, not retried
/// here: the next message or the sweep picks the event up again from the feed.
pub async fn on_message(
    service: &'static str,
    payload: &[u8],
    consumer: &impl Consumer,
    outbox_db: Option<&Db>,
) -> anyhow::Result<()> {
    let env = Envelope::from_bytes(payload)?;
    let trace = TraceContext::from_header(Some(&env.traceparent));
    let log = Logger::new(service, &trace.trace_id);
    let order_id = env.data.get("order_id").and_then(|v| v.as_str());
    match deliver(consumer, &feed(&trace), &env).await {
        Ok(()) => log.info(
            &format!("{} #{} from {} handled", env.type_name, env.seq, env.source),
            order_id,
        ),
        Err(e) => log.error(
            &format!(
                "{} #{} from {} not applied: {e:#}",
                env.type_name, env.seq, env.source
            ),
            order_id,
        ),
    }
    if let Some(db) = outbox_db {
        publish(service, db, &log);
    }
    Ok(())
}

/// `POST /<fn>/sweep`: pulls every upstream feed from where this consumer stands, then
/// republishes the outbox. Returns a report per source.
pub async fn sweep(
    ctx: &Ctx,
    consumer: &impl Consumer,
    upstream: &[&str],
    outbox_db: Option<&Db>,
) -> serde_json::Value {
    let consumed = catch_up_all(consumer, &feed(&ctx.trace), upstream).await;
    let published = outbox_db.map(|db| publish(ctx.service, db, &ctx.log));
    serde_json::json!({"consumed": consumed, "published": published})
}
