//! Delivery, deferral, per-order ordering, retries and parking, over in-memory ports.

use super::*;
use crate::inbox::{position, InboxPort, Position, Streams};
use crate::testing::block_on;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

/// Event `seq` of stream orders/0 about `order`.
fn ev(seq: i64, order: &str) -> Envelope {
    Envelope {
        id: format!("e{seq}"),
        data: serde_json::json!({ "order_id": order }),
        ..crate::testing::envelope(seq)
    }
}

/// A consumer whose effect records `(order, seq)`, failing for the events in `failing`; its
/// pending events and dead letters live in memory, as the SQL adapters keep them.
#[derive(Default)]
struct Mem {
    streams: RefCell<Streams>,
    applied: RefCell<Vec<(String, i64)>>,
    failing: RefCell<HashSet<i64>>,
    /// id -> (pending, next_at)
    pending: RefCell<BTreeMap<String, (Pending, i64)>>,
    parked: RefCell<Vec<Pending>>,
    noted: RefCell<Vec<String>>,
    redo: crate::redo::RedoMark,
}

impl InboxPort for Mem {
    fn inbox_position(&self, env: &Envelope) -> anyhow::Result<Position> {
        if self.redo.get(&env.id).is_some() {
            return Ok(if self.pending.borrow().contains_key(&env.id) {
                Position::Next
            } else {
                Position::Duplicate
            });
        }
        let waiting = self
            .pending
            .borrow()
            .values()
            .any(|(p, _)| p.env.order_id() == env.order_id());
        Ok(
            match position(self.streams.borrow().last(&env.source, 0), env.seq) {
                Position::Next if waiting => Position::Behind,
                other => other,
            },
        )
    }
    fn inbox_record(&self, env: &Envelope) -> anyhow::Result<()> {
        if self.redo.get(&env.id).is_some() {
            self.pending.borrow_mut().remove(&env.id);
        } else {
            self.streams.borrow_mut().advance(env);
        }
        Ok(())
    }
}

impl ConsumerStore for Mem {
    fn last_seq(&self, source: &str, partition: i64) -> anyhow::Result<i64> {
        Ok(self.streams.borrow().last(source, partition))
    }
    fn pending(&self) -> Option<&dyn PendingPort> {
        Some(self)
    }
}

impl Consumer for Mem {
    fn store(&self) -> &dyn ConsumerStore {
        self
    }
    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        crate::inbox::guarded(self, env, |m| {
            anyhow::ensure!(!m.failing.borrow().contains(&env.seq), "cannot apply");
            m.applied
                .borrow_mut()
                .push((env.order_id().to_string(), env.seq));
            Ok(())
        })
    }
    fn on_parked(&self, p: &Pending) -> anyhow::Result<()> {
        self.noted.borrow_mut().push(p.env.order_id().to_string());
        Ok(())
    }
}

impl PendingPort for Mem {
    fn after(&self) -> i64 {
        3
    }
    fn defer(&self, p: &Pending, next_at_ms: i64) -> anyhow::Result<Outcome> {
        match self.inbox_position(&p.env)? {
            Position::Next | Position::Behind => {
                self.pending
                    .borrow_mut()
                    .insert(p.env.id.clone(), (p.clone(), next_at_ms));
                self.streams.borrow_mut().advance(&p.env);
                Ok(Outcome::Deferred)
            }
            other => Ok(other.into()),
        }
    }
    fn due(&self, now_ms: i64, limit: i64) -> anyhow::Result<Vec<Pending>> {
        let pending = self.pending.borrow();
        let mut heads: Vec<&(Pending, i64)> = pending
            .values()
            .filter(|(p, _)| {
                !pending
                    .values()
                    .any(|(q, _)| q.env.order_id() == p.env.order_id() && q.env.seq < p.env.seq)
            })
            .filter(|(_, at)| *at <= now_ms)
            .collect();
        heads.sort_by_key(|(p, at)| (*at, p.env.seq));
        Ok(heads
            .into_iter()
            .take(limit as usize)
            .map(|(p, _)| p.clone())
            .collect())
    }
    fn next_due_at(&self) -> anyhow::Result<Option<i64>> {
        Ok(self.pending.borrow().values().map(|(_, at)| *at).min())
    }
    fn reschedule(&self, p: &Pending, next_at_ms: i64) -> anyhow::Result<()> {
        self.pending
            .borrow_mut()
            .insert(p.env.id.clone(), (p.clone(), next_at_ms));
        Ok(())
    }
    fn park(&self, p: &Pending, also: &dyn Fn() -> anyhow::Result<()>) -> anyhow::Result<()> {
        if self.pending.borrow_mut().remove(&p.env.id).is_some() {
            self.parked.borrow_mut().push(p.clone());
            also()?;
        }
        Ok(())
    }
    fn redo(&self, event: Option<(&str, crate::redo::Redo)>) {
        self.redo.set(event);
    }
}

struct VecFeed(Vec<Envelope>);

impl Feed for VecFeed {
    async fn page(&self, _: &str, _: i64, after: i64, limit: i64) -> anyhow::Result<Vec<Envelope>> {
        Ok(self
            .0
            .iter()
            .filter(|e| e.seq > after)
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

fn seqs(m: &Mem) -> Vec<i64> {
    m.applied.borrow().iter().map(|(_, s)| *s).collect()
}

/// Far in the future: every pending event is due.
const LATER: i64 = i64::MAX / 4;
/// Past any retry scheduled at [`LATER`].
const MAX_LATER_DELAY: i64 = crate::pending::MAX_DELAY_MS;

#[test]
fn a_gap_is_filled_from_the_feed_in_order() {
    let feed = VecFeed((1..=250).map(|s| ev(s, "o")).collect());
    let c = Mem::default();
    block_on(deliver(&c, &feed, &ev(1, "o"))).unwrap();
    block_on(deliver(&c, &feed, &ev(4, "o"))).unwrap();
    assert_eq!(seqs(&c), vec![1, 2, 3, 4]);
    block_on(deliver(&c, &feed, &ev(2, "o"))).unwrap();
    assert_eq!(seqs(&c).len(), 4);
}

#[test]
fn catch_up_reads_every_page() {
    let feed = VecFeed((1..=250).map(|s| ev(s, "o")).collect());
    let c = Mem::default();
    let mut done = Delivered::default();
    block_on(catch_up(&c, &feed, "orders", 0, None, &mut done)).unwrap();
    assert_eq!(done.applied, 250);
    let mut again = Delivered::default();
    block_on(catch_up(&c, &feed, "orders", 0, None, &mut again)).unwrap();
    assert_eq!(again, Delivered::default());
}

#[test]
fn a_feed_with_a_hole_is_an_error() {
    let feed = VecFeed(vec![ev(1, "o"), ev(3, "o")]);
    let c = Mem::default();
    let mut done = Delivered::default();
    assert!(block_on(catch_up(&c, &feed, "orders", 0, None, &mut done)).is_err());
    assert_eq!(seqs(&c), vec![1]);
}

#[test]
fn a_failing_event_holds_back_only_its_own_order() {
    let c = Mem::default();
    c.failing.borrow_mut().insert(2);
    let feed = VecFeed(vec![]);
    for (seq, order) in [(1, "a"), (2, "bad"), (3, "b"), (4, "bad"), (5, "c")] {
        block_on(deliver(&c, &feed, &ev(seq, order))).unwrap();
    }
    // Other orders flowed past; the bad order's later event waits behind its first.
    assert_eq!(seqs(&c), vec![1, 3, 5]);
    assert_eq!(c.streams.borrow().last("orders", 0), 5);
    assert_eq!(c.pending.borrow().len(), 2);
    // Once the cause is gone, a retry applies the bad order's events in their order.
    c.failing.borrow_mut().clear();
    let report = block_on(retry_due(&c, || LATER)).unwrap();
    assert_eq!(report.applied, 2);
    assert_eq!(seqs(&c), vec![1, 3, 5, 2, 4]);
    assert!(c.pending.borrow().is_empty());
}

#[test]
fn a_poison_event_is_parked_after_its_attempts_and_its_order_moves_on() {
    let c = Mem::default();
    c.failing.borrow_mut().insert(1);
    let feed = VecFeed(vec![]);
    block_on(deliver(&c, &feed, &ev(1, "bad"))).unwrap();
    block_on(deliver(&c, &feed, &ev(2, "bad"))).unwrap();
    assert_eq!(c.pending.borrow()["e1"].0.attempts, 1);
    // Not due yet: nothing is tried.
    assert_eq!(block_on(retry_due(&c, || 0)).unwrap(), Retried::default());
    let first = block_on(retry_due(&c, || LATER)).unwrap();
    assert_eq!((first.failed, first.parked), (1, 0));
    let second = block_on(retry_due(&c, || LATER + MAX_LATER_DELAY)).unwrap();
    assert_eq!((second.parked, second.applied), (1, 1));
    let parked = c.parked.borrow();
    assert_eq!(
        (parked[0].env.seq, parked[0].attempts),
        (1, 3),
        "parked after 3 attempts"
    );
    assert!(parked[0].error.contains("cannot apply"));
    assert_eq!(*c.noted.borrow(), vec!["bad".to_string()]);
    assert_eq!(seqs(&c), vec![2]);
}

#[test]
fn an_open_breaker_does_not_use_up_attempts() {
    let c = Mem::default();
    let mut p = Pending {
        env: ev(1, "o"),
        attempts: 2,
        error: String::new(),
    };
    let refused = anyhow::Error::new(crate::pending::NotAttempted { retry_in_ms: 300 });
    assert!(matches!(
        after_failure(&c, &mut p, &refused, 1000),
        Next::RetryAt(1300)
    ));
    assert_eq!(p.attempts, 2);
    assert!(matches!(
        after_failure(&c, &mut p, &anyhow::anyhow!("down"), 1000),
        Next::Park
    ));
}

#[test]
fn a_consumer_without_pending_storage_returns_the_failure() {
    struct Plain(crate::testing::Fake<()>);
    impl Consumer for Plain {
        fn store(&self) -> &dyn ConsumerStore {
            &self.0
        }
        async fn apply(&self, _: &Envelope) -> anyhow::Result<Outcome> {
            anyhow::bail!("boom")
        }
    }
    let plain = Plain(Default::default());
    assert!(block_on(deliver(&plain, &VecFeed(vec![]), &ev(1, "o"))).is_err());
}

#[test]
fn a_retry_pass_starts_nothing_past_its_budget() {
    let c = Mem::default();
    c.failing.borrow_mut().extend([1, 2]);
    let feed = VecFeed(vec![]);
    block_on(deliver(&c, &feed, &ev(1, "a"))).unwrap();
    block_on(deliver(&c, &feed, &ev(2, "b"))).unwrap();
    c.failing.borrow_mut().clear();
    // Each look at the clock is half a budget later.
    let clock = std::cell::Cell::new(LATER);
    let report = block_on(retry_due(&c, || {
        let now = clock.get();
        clock.set(now + RETRY_BUDGET_MS / 2);
        now
    }))
    .unwrap();
    assert_eq!(report.applied, 1, "{report:?}");
    assert_eq!(
        c.pending.borrow().len(),
        1,
        "the other waits for the next pass"
    );
}

/// The consumer each event of a batch is opened as: the same one, borrowed.
impl Consumer for &Mem {
    fn store(&self) -> &dyn ConsumerStore {
        *self
    }
    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        (**self).apply(env).await
    }
}

fn batch(c: &Mem, events: &[Envelope], now_ms: impl Fn() -> i64) -> Delivered {
    let (done, last) = block_on(deliver_batch(
        "orders",
        |_| Ok(c),
        &VecFeed(Vec::new()),
        events,
        now_ms,
    ));
    assert!(last.is_some());
    done
}

#[test]
fn a_batch_is_applied_in_order_and_a_failing_event_waits_alone() {
    let c = Mem::default();
    c.failing.borrow_mut().insert(3);
    let events = [ev(1, "a"), ev(2, "b"), ev(3, "a"), ev(4, "b"), ev(5, "a")];
    let done = batch(&c, &events, || 0);
    assert_eq!(
        done,
        Delivered {
            applied: 3,
            deferred: 2
        }
    );
    // Order a's 5 waits behind its failed 3; order b is not held up.
    assert_eq!(seqs(&c), vec![1, 2, 4]);
    let waiting: Vec<String> = c.pending.borrow().keys().cloned().collect();
    assert_eq!(waiting, ["e3", "e5"]);
    // Delivered again (a relay's retry), the batch changes nothing.
    assert_eq!(batch(&c, &events, || 0), Delivered::default());
}

#[test]
fn events_a_batch_has_no_time_left_for_are_deferred_due_at_once() {
    let c = Mem::default();
    let events = [ev(1, "a"), ev(2, "b"), ev(3, "c"), ev(4, "a")];
    // The clock passes the budget once two events are applied.
    let now = || {
        if c.applied.borrow().len() < 2 {
            0
        } else {
            BATCH_BUDGET_MS + 1
        }
    };
    let done = batch(&c, &events, now);
    assert_eq!(
        done,
        Delivered {
            applied: 2,
            deferred: 2
        }
    );
    assert_eq!(seqs(&c), vec![1, 2]);
    for (id, (p, at)) in c.pending.borrow().iter() {
        assert_eq!((p.attempts, *at), (0, BATCH_BUDGET_MS + 1), "{id}");
    }
    // The wake's retry applies them, in order.
    let retried = block_on(retry_due(&c, || BATCH_BUDGET_MS + 1)).unwrap();
    assert_eq!(retried.applied, 2);
    assert_eq!(seqs(&c), vec![1, 2, 3, 4]);
}
