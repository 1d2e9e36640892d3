//! Delivering events to a consumer, exactly once in effect and in order per order:
//! duplicates are ignored, a gap in a stream is filled from the producer's feed, and an event
//! that cannot be applied now is deferred (`pending`) so that its stream moves on; pending
//! events are retried when due and parked after too many failures.

use crate::feed::Feed;
use crate::inbox::Outcome;
use crate::log::{events, Logger};
use crate::pending::{self, Pending, PendingPort};
use crate::redo::Redo;
use crate::stream::channel;
use crate::wake::WakePort;
use crate::{Envelope, TraceContext};

/// Events fetched per feed request.
const PAGE: i64 = 100;
/// Upper bound on feed pages read in one delivery, so a handler always ends.
const MAX_PAGES: usize = 50;
/// Pending events retried per round, and rounds per call, so a retry pass always ends.
const RETRY_BATCH: i64 = 50;
const RETRY_ROUNDS: usize = 20;
/// How long one message's batch keeps starting events (ADR 0012): the rest are deferred, due
/// at once, for the wake, so that a batch of slow events (a provider that takes its time) still
/// ends well inside a host's deadline, and the events it made go out without waiting for all.
const BATCH_BUDGET_MS: i64 = 2_000;
/// How long one pass keeps starting retries: the wake loop and the sweep run it inside one
/// instance, which a host may stop (this host after 60 s by default).
const RETRY_BUDGET_MS: i64 = 15_000;

/// A function that applies events, each under its inbox guard.
#[allow(async_fn_in_trait)] // components are single-threaded; no Send bound is wanted
pub trait Consumer {
    /// Its inbox, pending events and wake.
    fn store(&self) -> &dyn ConsumerStore;
    /// Applies `env` under the inbox guard (`inbox::guarded`).
    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome>;
    /// The function's own record of a parked event, run in the parking transaction (orders
    /// notes it in the order's history, the others announce it to orders).
    fn on_parked(&self, _pending: &Pending) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What a consuming function's store offers the delivery: its inbox, and where events wait
/// when they cannot be applied now. A function's `Consumer` forwards to it.
pub trait ConsumerStore: crate::inbox::InboxPort {
    /// The last seq applied in stream `source`/`partition`.
    fn last_seq(&self, source: &str, partition: i64) -> anyhow::Result<i64>;
    /// Where events that cannot be applied now wait; `None` fails them back to the caller.
    fn pending(&self) -> Option<&dyn PendingPort> {
        None
    }
    /// Where the wake that retries pending events on time is armed; `None`: only the sweep
    /// retries them.
    fn wake(&self) -> Option<&dyn WakePort> {
        None
    }
    /// Where the function's own events wait to be published; `None`: it publishes none.
    fn outbox(&self) -> Option<&crate::sql::Db> {
        None
    }
}

/// A store kept in one SQL database keeps its inbox, pending events, wake and outbox there.
impl<T: crate::inbox::sql::SqlBacked> ConsumerStore for T {
    fn last_seq(&self, source: &str, partition: i64) -> anyhow::Result<i64> {
        crate::inbox::sql::last(self.db(), source, partition)
    }
    fn pending(&self) -> Option<&dyn PendingPort> {
        Some(self.db())
    }
    fn wake(&self) -> Option<&dyn WakePort> {
        Some(self.db())
    }
    fn outbox(&self) -> Option<&crate::sql::Db> {
        Some(self.db())
    }
}

fn logger(env: &Envelope) -> Logger {
    Logger::shared(&TraceContext::from_header(Some(&env.traceparent)))
}

/// Logs a duplicate, deferral or parking as a well-known event, which the host counts.
fn log_outcome(env: &Envelope, outcome: Outcome, error: &str) {
    let (level, event, what) = match outcome {
        Outcome::Duplicate => ("info", events::DUPLICATE, "received again, ignored".into()),
        Outcome::Deferred => ("warn", events::DEFERRED, format!("deferred: {error}")),
        Outcome::Parked => (
            "warn",
            events::DEAD_LETTER,
            format!("parked as a dead letter: {error}"),
        ),
        Outcome::Applied | Outcome::Gap { .. } | Outcome::Behind => return,
    };
    logger(env).event(
        level,
        event,
        &format!("{} {what}", env.label()),
        Some(env.order_id()).filter(|o| !o.is_empty()),
        serde_json::json!({"channel": channel(&env.source, &env.consumer, env.partition),
                           "source": env.source, "partition": env.partition, "seq": env.seq}),
    );
}

/// What to do with an event after a failed attempt.
enum Next {
    RetryAt(i64),
    Park,
}

/// After a failed attempt at `p`: it is parked once it has failed [`PendingPort::after`]
/// times, otherwise tried again later. An attempt refused by an open breaker is not counted.
fn after_failure(
    port: &dyn PendingPort,
    p: &mut Pending,
    error: &anyhow::Error,
    now_ms: i64,
) -> Next {
    p.error = format!("{error:#}");
    if let Some(wait) = pending::not_attempted(error) {
        return Next::RetryAt(now_ms + wait);
    }
    p.attempts += 1;
    if p.attempts >= port.after() {
        Next::Park
    } else {
        Next::RetryAt(now_ms + pending::delay_ms(p.attempts))
    }
}

/// Hands `env` (the next event of its stream) to the consumer; an event that fails or must
/// wait behind its order is deferred, and the stream moves on either way.
async fn accept(consumer: &impl Consumer, env: &Envelope) -> anyhow::Result<Outcome> {
    let result = consumer.apply(env).await;
    let Some(port) = consumer.store().pending() else {
        return result;
    };
    // Only an event that must wait is copied into a pending entry.
    let (outcome, error) = match result {
        Ok(Outcome::Behind) => {
            let p = Pending::unattempted(env, "waiting behind an earlier event of its order");
            (port.defer(&p, 0)?, p.error)
        }
        Ok(outcome) => (outcome, String::new()),
        Err(e) => {
            let mut p = Pending::unattempted(env, String::new());
            let now = crate::time::now_millis();
            let outcome = match after_failure(port, &mut p, &e, now) {
                Next::RetryAt(at) => port.defer(&p, at)?,
                // Parking takes a pending event: deferred first, then parked.
                Next::Park => match port.defer(&p, now)? {
                    Outcome::Deferred => {
                        port.park(&p, &|| consumer.on_parked(&p))?;
                        Outcome::Parked
                    }
                    other => other,
                },
            };
            (outcome, p.error)
        }
    };
    log_outcome(env, outcome, &error);
    Ok(outcome)
}

/// What one delivery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub applied: usize,
    /// Events deferred (or parked): a retry is due.
    pub deferred: usize,
}

impl Delivered {
    fn merge(&mut self, other: Delivered) {
        self.applied += other.applied;
        self.deferred += other.deferred;
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Deferred | Outcome::Parked => self.deferred += 1,
            Outcome::Duplicate | Outcome::Gap { .. } | Outcome::Behind => {}
        }
    }
}

/// Applies `env`, first filling any gap before it in its stream from `feed`.
pub async fn deliver(
    consumer: &impl Consumer,
    feed: &impl Feed,
    env: &Envelope,
) -> anyhow::Result<Delivered> {
    let mut done = Delivered::default();
    match accept(consumer, env).await? {
        Outcome::Gap { .. } => {
            catch_up(
                consumer,
                feed,
                &env.source,
                env.partition,
                Some(env.seq),
                &mut done,
            )
            .await?
        }
        outcome => done.add(outcome),
    }
    Ok(done)
}

/// Applies events of stream `source`/`partition` from the feed, in order, until `until` is
/// handled or the feed has nothing newer.
pub async fn catch_up(
    consumer: &impl Consumer,
    feed: &impl Feed,
    source: &str,
    partition: i64,
    until: Option<i64>,
    done: &mut Delivered,
) -> anyhow::Result<()> {
    for _ in 0..MAX_PAGES {
        let last = consumer.store().last_seq(source, partition)?;
        if until.is_some_and(|u| last >= u) {
            break;
        }
        let want = until.map_or(PAGE, |u| (u - last).min(PAGE));
        let page = feed.page(source, partition, last, want).await?;
        if page.is_empty() {
            break;
        }
        for env in &page {
            match accept(consumer, env).await? {
                Outcome::Gap { last } => anyhow::bail!(
                    "feed of {source}/{partition} skips from {last} to {}",
                    env.seq
                ),
                outcome => done.add(outcome),
            }
        }
    }
    Ok(())
}

/// Catches up on every stream of every upstream source; reports per source how many events
/// were applied and deferred. A failing stream is reported and does not stop the others.
pub async fn catch_up_all(
    consumer: &impl Consumer,
    feed: &impl Feed,
    sources: &[&str],
) -> serde_json::Value {
    let mut report = serde_json::Map::new();
    for source in sources {
        let mut done = Delivered::default();
        let mut errors = Vec::new();
        for partition in crate::stream::partitions() {
            if let Err(e) = catch_up(consumer, feed, source, partition, None, &mut done).await {
                errors.push(format!("{partition}: {e:#}"));
            }
        }
        let mut entry = serde_json::json!({"applied": done.applied, "deferred": done.deferred});
        if !errors.is_empty() {
            entry["error"] = errors.join("; ").into();
        }
        report.insert(source.to_string(), entry);
    }
    serde_json::Value::Object(report)
}

/// What one retry pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Retried {
    pub applied: usize,
    pub failed: usize,
    pub parked: usize,
}

/// Retries every pending event that is due, each the first of its order; an event applied or
/// parked lets the next one of its order follow in the same pass. Starts no retry after
/// [`RETRY_BUDGET_MS`]: what is left waits for the next pass.
pub async fn retry_due(
    consumer: &impl Consumer,
    now_ms: impl Fn() -> i64,
) -> anyhow::Result<Retried> {
    let mut report = Retried::default();
    let Some(port) = consumer.store().pending() else {
        return Ok(report);
    };
    let started = now_ms();
    for _ in 0..RETRY_ROUNDS {
        let due = port.due(now_ms(), RETRY_BATCH)?;
        if due.is_empty() {
            break;
        }
        for p in due {
            if now_ms() - started > RETRY_BUDGET_MS {
                return Ok(report);
            }
            port.redo(Some((&p.env.id, Redo::Pending)));
            let result = consumer.apply(&p.env).await;
            port.redo(None);
            match result {
                Ok(Outcome::Applied) => {
                    report.applied += 1;
                    logger(&p.env).info(&format!("{} applied on retry", p.env.label()), None);
                }
                Ok(_) => {} // done meanwhile by another instance
                Err(e) => {
                    let mut p = p;
                    match after_failure(port, &mut p, &e, now_ms()) {
                        Next::RetryAt(at) => {
                            report.failed += 1;
                            port.reschedule(&p, at)?;
                        }
                        Next::Park => {
                            report.parked += 1;
                            port.park(&p, &|| consumer.on_parked(&p))?;
                            log_outcome(&p.env, Outcome::Parked, &p.error);
                        }
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Applies one delivered event (filling any gap from `feed`) and logs the outcome; the same
/// path for a Redis message and an HTTP delivery.
pub async fn deliver_logged(
    service: &'static str,
    consumer: &impl Consumer,
    feed: &impl Feed,
    env: &Envelope,
) -> anyhow::Result<Delivered> {
    let log = Logger::new(
        service,
        &TraceContext::from_header(Some(&env.traceparent)).trace_id,
    );
    let order_id = Some(env.order_id()).filter(|o| !o.is_empty());
    let result = deliver(consumer, feed, env).await;
    match &result {
        Ok(_) => log.info(&format!("{} handled", env.label()), order_id),
        Err(e) => log.error(&format!("{} not handled: {e:#}", env.label()), order_id),
    }
    result
}

/// Applies the events of one message in order, each with a consumer of its own trace from
/// `open` and as [`deliver_logged`] does (a failure is logged and does not stop the others);
/// events not started within [`BATCH_BUDGET_MS`] are deferred instead, due at once. Returns
/// what was done and the last consumer opened, to publish what the batch made.
pub async fn deliver_batch<C: Consumer>(
    service: &'static str,
    open: impl Fn(&Envelope) -> anyhow::Result<C>,
    feed: &impl Feed,
    batch: &[Envelope],
    now_ms: impl Fn() -> i64,
) -> (Delivered, Option<C>) {
    let started = now_ms();
    let mut done = Delivered::default();
    let mut last = None;
    for (n, env) in batch.iter().enumerate() {
        let consumer = match open(env) {
            Ok(consumer) => last.insert(consumer),
            Err(e) => {
                logger(env).error(&format!("{} not handled: {e:#}", env.label()), None);
                continue;
            }
        };
        if now_ms() - started > BATCH_BUDGET_MS {
            defer_unstarted(consumer, &batch[n..], now_ms(), &mut done);
            break;
        }
        if let Ok(delivered) = deliver_logged(service, consumer, feed, env).await {
            done.merge(delivered);
        }
    }
    (done, last)
}

/// Defers `rest`, the events of a batch its instance had no time left for, in order. Without a
/// place for pending events they are left to the next gap fill.
fn defer_unstarted(consumer: &impl Consumer, rest: &[Envelope], now_ms: i64, done: &mut Delivered) {
    let Some(port) = consumer.store().pending() else {
        return;
    };
    for env in rest {
        let p = Pending::unattempted(env, "not started within its batch's time");
        match port.defer(&p, now_ms) {
            Ok(outcome) => {
                log_outcome(env, outcome, &p.error);
                done.add(outcome);
            }
            Err(e) => {
                logger(env).error(&format!("{} not deferred: {e:#}", env.label()), None);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
