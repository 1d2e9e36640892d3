//! Delivering events to a consumer in order, exactly once in effect: duplicates are ignored,
//! and a gap is filled from the producer's feed before the new event is applied.

use crate::deadletter::{self, DeadLetterPort};
use crate::envelope::channel;
use crate::feed::Feed;
use crate::inbox::Outcome;
use crate::log::{events, Logger};
use crate::{Envelope, TraceContext};

/// Events fetched per feed request.
const PAGE: i64 = 100;
/// Upper bound on feed pages read in one delivery, so a handler always ends.
const MAX_PAGES: usize = 50;

/// A function that applies events, each under its inbox guard.
#[allow(async_fn_in_trait)] // components are single-threaded; no Send bound is wanted
pub trait Consumer {
    fn last_seq(&self, source: &str) -> anyhow::Result<i64>;
    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome>;
    /// Where events that keep failing are parked; `None` retries them for ever.
    fn dead_letters(&self) -> Option<&dyn DeadLetterPort> {
        None
    }
}

/// Applies `env`; a failure is counted and, once it has failed often enough, the event is
/// parked so the events after it can flow. Duplicates and parked events are logged as
/// well-known events, which the host counts.
async fn apply_or_park(consumer: &impl Consumer, env: &Envelope) -> anyhow::Result<Outcome> {
    let outcome = match consumer.apply(env).await {
        Ok(outcome) => outcome,
        Err(e) => match consumer.dead_letters() {
            Some(port) => deadletter::on_failure(port, env, e)?,
            None => return Err(e),
        },
    };
    let (level, event, what) = match outcome {
        Outcome::Duplicate => ("info", events::DUPLICATE, "received again, ignored"),
        Outcome::Parked => ("warn", events::DEAD_LETTER, "parked as a dead letter"),
        Outcome::Applied | Outcome::Gap { .. } => return Ok(outcome),
    };
    Logger::shared(&TraceContext::from_header(Some(&env.traceparent))).event(
        level,
        event,
        &format!("{} #{} from {} {what}", env.type_name, env.seq, env.source),
        env.data.get("order_id").and_then(|v| v.as_str()),
        serde_json::json!({"channel": channel(&env.source), "source": env.source, "seq": env.seq}),
    );
    Ok(outcome)
}

/// Applies `env`, first filling any gap before it from `feed`.
pub async fn deliver(
    consumer: &impl Consumer,
    feed: &impl Feed,
    env: &Envelope,
) -> anyhow::Result<()> {
    match apply_or_park(consumer, env).await? {
        Outcome::Applied | Outcome::Duplicate | Outcome::Parked => Ok(()),
        Outcome::Gap { .. } => {
            catch_up(consumer, feed, &env.source, Some(env.seq)).await?;
            Ok(())
        }
    }
}

/// Applies events of `source` from the feed, in order, until `until` is applied or the feed
/// has nothing newer. Returns how many events were applied.
pub async fn catch_up(
    consumer: &impl Consumer,
    feed: &impl Feed,
    source: &str,
    until: Option<i64>,
) -> anyhow::Result<usize> {
    let mut applied = 0;
    for _ in 0..MAX_PAGES {
        let last = consumer.last_seq(source)?;
        if until.is_some_and(|u| last >= u) {
            break;
        }
        let want = until.map_or(PAGE, |u| (u - last).min(PAGE));
        let page = feed.page(source, last, want).await?;
        if page.is_empty() {
            break;
        }
        for env in &page {
            match apply_or_park(consumer, env).await? {
                Outcome::Applied => applied += 1,
                Outcome::Duplicate | Outcome::Parked => {}
                Outcome::Gap { last } => {
                    anyhow::bail!("feed of {source} skips from {last} to {}", env.seq)
                }
            }
        }
    }
    Ok(applied)
}

/// Catches up on every upstream source; returns how many events each one contributed.
/// A failing source is reported and does not stop the others.
pub async fn catch_up_all(
    consumer: &impl Consumer,
    feed: &impl Feed,
    sources: &[&str],
) -> serde_json::Value {
    let mut report = serde_json::Map::new();
    for source in sources {
        let entry = match catch_up(consumer, feed, source, None).await {
            Ok(n) => serde_json::json!({"applied": n}),
            Err(e) => serde_json::json!({"error": format!("{e:#}")}),
        };
        report.insert(source.to_string(), entry);
    }
    serde_json::Value::Object(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::position;
    use crate::inbox::Position;
    use crate::testing::block_on;
    use std::cell::RefCell;

    use crate::testing::envelope as env;

    #[derive(Default)]
    struct Recorder {
        applied: RefCell<Vec<i64>>,
    }

    impl Consumer for Recorder {
        fn last_seq(&self, _: &str) -> anyhow::Result<i64> {
            Ok(self.applied.borrow().last().copied().unwrap_or(0))
        }
        async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
            Ok(match position(self.last_seq(&env.source)?, env.seq) {
                Position::Duplicate => Outcome::Duplicate,
                Position::Gap { last } => Outcome::Gap { last },
                Position::Next => {
                    self.applied.borrow_mut().push(env.seq);
                    Outcome::Applied
                }
            })
        }
    }

    struct VecFeed(Vec<Envelope>);

    impl Feed for VecFeed {
        async fn page(&self, _: &str, after: i64, limit: i64) -> anyhow::Result<Vec<Envelope>> {
            Ok(self
                .0
                .iter()
                .filter(|e| e.seq > after)
                .take(limit as usize)
                .cloned()
                .collect())
        }
    }

    #[test]
    fn a_gap_is_filled_from_the_feed_in_order() {
        let feed = VecFeed((1..=250).map(env).collect());
        let c = Recorder::default();
        block_on(deliver(&c, &feed, &env(1))).unwrap();
        block_on(deliver(&c, &feed, &env(4))).unwrap();
        assert_eq!(*c.applied.borrow(), vec![1, 2, 3, 4]);
        block_on(deliver(&c, &feed, &env(2))).unwrap();
        assert_eq!(c.applied.borrow().len(), 4);
    }

    #[test]
    fn catch_up_reads_every_page() {
        let feed = VecFeed((1..=250).map(env).collect());
        let c = Recorder::default();
        assert_eq!(block_on(catch_up(&c, &feed, "orders", None)).unwrap(), 250);
        assert_eq!(block_on(catch_up(&c, &feed, "orders", None)).unwrap(), 0);
    }

    #[test]
    fn a_feed_with_a_hole_is_an_error() {
        let feed = VecFeed(vec![env(1), env(3)]);
        let c = Recorder::default();
        assert!(block_on(catch_up(&c, &feed, "orders", None)).is_err());
        assert_eq!(*c.applied.borrow(), vec![1]);
    }

    /// Fails on `poison` until parked; counts attempts in memory.
    struct Poisoned {
        inner: Recorder,
        poison: i64,
        attempts: RefCell<i64>,
        parked: RefCell<Vec<i64>>,
    }

    impl Poisoned {
        fn new(poison: i64) -> Self {
            Poisoned {
                inner: Recorder::default(),
                poison,
                attempts: RefCell::new(0),
                parked: RefCell::default(),
            }
        }
    }

    impl Consumer for Poisoned {
        fn last_seq(&self, source: &str) -> anyhow::Result<i64> {
            let parked = self.parked.borrow().last().copied().unwrap_or(0);
            Ok(self.inner.last_seq(source)?.max(parked))
        }
        async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
            if position(self.last_seq(&env.source)?, env.seq) == Position::Next
                && env.seq == self.poison
            {
                anyhow::bail!("cannot apply {}", env.seq);
            }
            self.inner.apply(env).await
        }
        fn dead_letters(&self) -> Option<&dyn DeadLetterPort> {
            Some(self)
        }
    }

    impl DeadLetterPort for Poisoned {
        fn after(&self) -> i64 {
            3
        }
        fn count_failure(&self, _: &Envelope, _: &str) -> anyhow::Result<i64> {
            *self.attempts.borrow_mut() += 1;
            Ok(*self.attempts.borrow())
        }
        fn park(&self, env: &Envelope, _: &str, _: i64) -> anyhow::Result<Outcome> {
            self.parked.borrow_mut().push(env.seq);
            // The recorder's position must move past the parked event as an inbox would.
            self.inner.applied.borrow_mut().push(env.seq);
            Ok(Outcome::Parked)
        }
    }

    #[test]
    fn a_poison_event_fails_until_parked_then_later_events_flow() {
        let feed = VecFeed((1..=4).map(env).collect());
        let c = Poisoned::new(2);
        block_on(deliver(&c, &feed, &env(1))).unwrap();
        assert!(block_on(deliver(&c, &feed, &env(2))).is_err());
        assert!(block_on(deliver(&c, &feed, &env(2))).is_err());
        assert!(c.parked.borrow().is_empty());
        block_on(deliver(&c, &feed, &env(4))).unwrap();
        assert_eq!(*c.parked.borrow(), vec![2]);
        assert_eq!(*c.inner.applied.borrow(), vec![1, 2, 3, 4]);
        assert_eq!(*c.attempts.borrow(), 3);
    }

    #[test]
    fn a_failure_below_the_threshold_is_returned_not_parked() {
        let failing = crate::deadletter::on_failure(&NeverPark, &env(2), anyhow::anyhow!("boom"));
        assert!(failing.is_err());
    }

    struct NeverPark;

    impl DeadLetterPort for NeverPark {
        fn after(&self) -> i64 {
            5
        }
        fn count_failure(&self, _: &Envelope, _: &str) -> anyhow::Result<i64> {
            Ok(1)
        }
        fn park(&self, _: &Envelope, _: &str, _: i64) -> anyhow::Result<Outcome> {
            anyhow::bail!("must not park before the threshold")
        }
    }
}
