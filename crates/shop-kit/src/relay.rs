//! The event plumbing every function's transport shares: applying one delivered event,
//! handing the outbox to the consumers after commit (Redis or HTTP, by `event_delivery`),
//! the wake loop that retries pending events on time, and the catch-up sweep.

use crate::config::{self, EventDelivery};
use crate::consume::{self, catch_up_all, Consumer};
use crate::feed::HttpFeed;
use crate::log::Logger;
use crate::publish::{self as redis_publish, Look};
use crate::sql::Db;
use crate::wake::{self, Step};
use crate::web::Ctx;
use crate::{push, seal, Envelope, TraceContext};

/// How long a failed publish is retried in the instance that made the events (after its
/// response, or after its message), before they are left to the next publish or the sweep.
const PUBLISH_PATIENCE_MS: i64 = 30_000;

fn feed(consumer: &'static str, trace: &TraceContext) -> HttpFeed {
    HttpFeed {
        base_url: config::app_base_url(),
        consumer,
        traceparent: trace.child().header(),
    }
}

async fn publish_once(service: &str, db: &Db, log: &Logger, look: Look) -> anyhow::Result<usize> {
    match config::event_delivery() {
        EventDelivery::Redis => {
            redis_publish::to_redis(db, service, &config::redis_address(), look)
        }
        EventDelivery::Http => push::publish(db, service, log).await,
    }
}

/// Hands `service`'s unsent outbox rows to their consumers: on Redis, with `Look::Own` only
/// when this instance claimed the relay for the events it wrote (`publish::to_redis`). A
/// failure (Redis restarting, a consumer refusing) is retried with backoff for
/// [`PUBLISH_PATIENCE_MS`], each retry looking for every unsent event; then the rows are left
/// for the next publish or the sweep. Returns how many went out.
pub async fn publish(service: &str, db: &Db, log: &Logger, look: Look) -> usize {
    let started = crate::time::now_millis();
    let mut attempt = 0;
    let mut look = look;
    loop {
        let result = publish_once(service, db, log, look).await;
        look = Look::All;
        match result {
            Ok(n) => return n,
            Err(e) => {
                attempt += 1;
                let wait = crate::pending::delay_ms(attempt);
                if crate::time::now_millis() + wait - started > PUBLISH_PATIENCE_MS {
                    log.warn(
                        &format!("publishing {service} events deferred: {e:#}"),
                        None,
                    );
                    return 0;
                }
                log.info(
                    &format!("publishing {service} events: {e:#}; retrying"),
                    None,
                );
                wake::nap(wait);
            }
        }
    }
}

/// Sends the wake to `service` itself when it has just deferred events and no loop holds the
/// arm (see `wake`). A wake that cannot be sent is logged: the sweep arms it again later.
pub async fn ring(service: &str, consumer: &impl Consumer, log: &Logger) {
    let Some(port) = consumer.store().wake() else {
        return;
    };
    let sent = match port.arm(crate::time::now_millis()) {
        Ok(Some(arm)) => send_wake(service, &arm).await,
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        log.warn(&format!("wake of {service} not sent: {e:#}"), None);
    }
}

async fn send_wake(service: &str, arm: &str) -> anyhow::Result<()> {
    match config::event_delivery() {
        EventDelivery::Redis => {
            let address = config::redis_address();
            let conn = spin_sdk::redis::Connection::open(&address)
                .map_err(|e| anyhow::anyhow!("redis {address}: {e:?}"))?;
            conn.publish(&wake::channel(service), &wake::message(arm))
                .map_err(|e| anyhow::anyhow!("publish wake: {e:?}"))
        }
        EventDelivery::Http => push::wake(service, arm).await,
    }
}

/// Applies one event delivered over HTTP; a deferral rings the wake. What it made is
/// published after the response (`Ctx::publish_after_response`).
pub async fn deliver(
    service: &'static str,
    env: &Envelope,
    consumer: &impl Consumer,
) -> anyhow::Result<consume::Delivered> {
    let trace = TraceContext::from_header(Some(&env.traceparent));
    let log = Logger::new(service, &trace.trace_id);
    let done = consume::deliver_logged(service, consumer, &feed(service, &trace), env).await;
    if done.as_ref().is_ok_and(|d| d.deferred > 0) {
        ring(service, consumer, &log).await;
    }
    done
}

/// Handles one message of an upstream channel (an event, or a batch of a stream's events:
/// `envelope::BATCH`) or of the wake channel: applies each authentic event in turn, with a
/// consumer opened by `open` in the event's trace, then publishes what they made, together. A
/// failure is logged, not retried here: the next message or the sweep picks the event up
/// again from the feed.
pub async fn on_message<C: Consumer>(
    service: &'static str,
    payload: &[u8],
    open: impl Fn(&TraceContext) -> anyhow::Result<C>,
) -> anyhow::Result<()> {
    if let Some(arm) = wake::parse(payload) {
        return run_wake(service, &arm, &open(&TraceContext::new_root())?).await;
    }
    let keys = config::internal_keys();
    let mut batch = Vec::new();
    for parsed in Envelope::batch_from_bytes(payload)? {
        match parsed {
            Ok(env) if seal::authentic(keys.as_ref(), &env, service).is_ok() => batch.push(env),
            Ok(_) => {}
            Err(e) => Logger::new(service, &TraceContext::new_root().trace_id).warn(
                &format!("malformed event in a message ignored: {e:#}"),
                None,
            ),
        }
    }
    let Some(first) = batch.first() else {
        return Ok(());
    };
    let trace = TraceContext::from_header(Some(&first.traceparent));
    let (done, consumer) = consume::deliver_batch(
        service,
        |env| open(&TraceContext::from_header(Some(&env.traceparent))),
        &feed(service, &trace),
        &batch,
        crate::time::now_millis,
    )
    .await;
    // No consumer opened: nothing was applied, nothing made.
    let Some(consumer) = consumer else {
        return Ok(());
    };
    let log = Logger::new(service, &trace.trace_id);
    if let Some(db) = consumer.store().outbox() {
        publish(service, db, &log, Look::Own).await;
    }
    if done.deferred > 0 {
        ring(service, &consumer, &log).await;
    }
    Ok(())
}

/// The wake loop (see `wake`): retries what is due until nothing is pending, another arm
/// takes over, or the budget is spent (then the wake is sent again).
pub async fn run_wake(
    service: &'static str,
    arm: &str,
    consumer: &impl Consumer,
) -> anyhow::Result<()> {
    let (Some(port), Some(pending)) = (consumer.store().wake(), consumer.store().pending()) else {
        return Ok(());
    };
    let log = Logger::new(service, &TraceContext::new_root().trace_id);
    let started = crate::time::now_millis();
    loop {
        if !port.hold(arm, crate::time::now_millis())? {
            return Ok(());
        }
        let retried = consume::retry_due(consumer, crate::time::now_millis).await?;
        if retried.applied + retried.parked > 0 {
            if let Some(db) = consumer.store().outbox() {
                publish(service, db, &log, Look::All).await;
            }
        }
        let now = crate::time::now_millis();
        match wake::step(pending.next_due_at()?, now, started) {
            Step::Sleep(ms) => wake::nap(ms),
            Step::HandOver => return send_wake(service, arm).await,
            Step::Stop => {
                if port.disarm(arm)? {
                    return Ok(());
                }
            }
        }
    }
}

/// The catch-up half of `POST /<fn>/sweep`: pulls every upstream stream (see
/// `subscriptions`) from where this consumer stands, then retries what is due and arms the
/// wake for what is not. Answers `{"consumed": {<source>: ...}, "retried": ...}`.
pub async fn catch_up(ctx: &Ctx, consumer: &impl Consumer) -> serde_json::Value {
    let upstream = crate::subscriptions::upstream(ctx.service);
    let consumed = catch_up_all(consumer, &feed(ctx.service, &ctx.trace), &upstream).await;
    let retried = match consume::retry_due(consumer, crate::time::now_millis).await {
        Ok(r) => serde_json::json!(r),
        Err(e) => serde_json::json!({"error": format!("{e:#}")}),
    };
    if consumer
        .store()
        .pending()
        .is_some_and(|p| p.next_due_at().ok().flatten().is_some())
    {
        ring(ctx.service, consumer, &ctx.log).await;
    }
    serde_json::json!({"consumed": consumed, "retried": retried})
}
