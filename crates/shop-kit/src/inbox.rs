//! Idempotent consumption, ordered per order: a consumer remembers the last `seq` it applied
//! per stream `(source, partition)`, in the same transaction as the effect, and applies an
//! event only after every earlier event of the same order from the same source is done.
//!
//! An event that cannot be applied leaves its stream at once: it is kept as pending
//! (`pending`) and the stream moves past it, so other orders' events flow; later events of
//! the same order wait behind it (`Position::Behind`) until it is applied or parked.

use crate::Envelope;

/// Where an incoming event stands relative to what was already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Already applied (or pending, or parked): ignore.
    Duplicate,
    /// The very next one of its stream, and nothing of its order waits before it: apply.
    Next,
    /// Events between `last` and this one are missing: fill from the feed first.
    Gap { last: i64 },
    /// The next one of its stream, but an earlier event of its order is pending: it waits
    /// behind that one.
    Behind,
}

/// Where `seq` stands in a stream whose last applied event is `last`.
pub fn position(last: i64, seq: i64) -> Position {
    if seq <= last {
        Position::Duplicate
    } else if seq == last + 1 {
        Position::Next
    } else {
        Position::Gap { last }
    }
}

/// What handing one event to a consumer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Gap {
        last: i64,
    },
    /// It must wait behind an earlier event of its order (nothing was done).
    Behind,
    /// It could not be applied now: kept as pending, retried on its own schedule.
    Deferred,
    /// Failed too often: parked as a dead letter.
    Parked,
}

impl From<Position> for Outcome {
    /// The outcome of an event that is not applied because of where it stands.
    fn from(position: Position) -> Self {
        match position {
            Position::Duplicate | Position::Next => Outcome::Duplicate,
            Position::Gap { last } => Outcome::Gap { last },
            Position::Behind => Outcome::Behind,
        }
    }
}

/// The inbox as a transaction sees it.
pub trait InboxPort {
    /// Where `env` stands: in its stream, or, while this consumer retries a pending or parked
    /// event (`pending::PendingPort::redo`), `Next` if that event still waits and `Duplicate`
    /// if it is done.
    fn inbox_position(&self, env: &Envelope) -> anyhow::Result<Position>;
    /// Records `env` as applied: its stream moves to it, or the pending or parked event being
    /// retried is removed. Call in the effect's transaction.
    fn inbox_record(&self, env: &Envelope) -> anyhow::Result<()>;
}

/// Runs `effect` only when `env` may be applied now, and records it as applied.
/// Call inside the transaction that also holds the effect.
pub fn guarded<T: InboxPort + ?Sized>(
    tx: &T,
    env: &Envelope,
    effect: impl FnOnce(&T) -> anyhow::Result<()>,
) -> anyhow::Result<Outcome> {
    match tx.inbox_position(env)? {
        Position::Next => {
            effect(tx)?;
            tx.inbox_record(env)?;
            Ok(Outcome::Applied)
        }
        other => Ok(other.into()),
    }
}

/// In-memory streams, for fakes: the last seq per `(source, partition)`.
#[derive(Debug, Clone, Default)]
pub struct Streams(std::collections::HashMap<(String, i64), i64>);

impl Streams {
    pub fn last(&self, source: &str, partition: i64) -> i64 {
        *self.0.get(&(source.to_string(), partition)).unwrap_or(&0)
    }

    pub fn advance(&mut self, env: &Envelope) {
        let last = self
            .0
            .entry((env.source.clone(), env.partition))
            .or_default();
        *last = (*last).max(env.seq);
    }
}

/// SQL for consumers whose inbox lives in their SQL store: table `inbox_streams(source, partition,
/// last_seq)`, with `pending_events` and `dead_letters` for the events being retried.
pub mod sql {
    use super::{position, InboxPort, Position};
    use crate::redo::Redo;
    use crate::sql::{i, int, t, Db};
    use crate::Envelope;

    /// A store kept in one SQL database. Its inbox, pending events and dead letters live in
    /// that database, so implementing this one accessor gives the store its `InboxPort`.
    pub trait SqlBacked {
        fn db(&self) -> &Db;
    }

    impl<T: SqlBacked> InboxPort for T {
        fn inbox_position(&self, env: &Envelope) -> anyhow::Result<Position> {
            self.db().inbox_position(env)
        }

        fn inbox_record(&self, env: &Envelope) -> anyhow::Result<()> {
            self.db().inbox_record(env)
        }
    }

    /// The stream's last seq and whether an event of the same order and source is pending,
    /// in one statement. `?1` source, `?2` partition, `?3` order id.
    pub const STANDING: &str = "SELECT \
        (SELECT last_seq FROM inbox_streams WHERE source = ?1 AND partition = ?2), \
        EXISTS (SELECT 1 FROM pending_events WHERE source = ?1 AND order_key = ?3)";

    /// The last seq applied in stream `source`/`partition`.
    pub fn last(db: &Db, source: &str, partition: i64) -> anyhow::Result<i64> {
        let rows = db.exec(
            "SELECT last_seq FROM inbox_streams WHERE source = ? AND partition = ?",
            &[t(source), i(partition)],
        )?;
        Ok(rows.rows.first().map(|r| int(r, 0)).unwrap_or(0))
    }

    /// Moves the stream of `env` to it; never back.
    pub fn advance(db: &Db, env: &Envelope) -> anyhow::Result<()> {
        db.exec(
            "INSERT INTO inbox_streams (source, partition, last_seq) VALUES (?, ?, ?) \
             ON CONFLICT(source, partition) DO UPDATE SET last_seq = excluded.last_seq \
             WHERE inbox_streams.last_seq < excluded.last_seq",
            &[t(&env.source), i(env.partition), i(env.seq)],
        )?;
        Ok(())
    }

    impl InboxPort for Db {
        fn inbox_position(&self, env: &Envelope) -> anyhow::Result<Position> {
            if let Some(redo) = self.redo.get(&env.id) {
                let rows = self.exec(exists_sql(redo), &[t(&env.id)])?;
                return Ok(if rows.rows.is_empty() {
                    Position::Duplicate
                } else {
                    Position::Next
                });
            }
            let rows = self.exec(
                STANDING,
                &[t(&env.source), i(env.partition), t(env.order_id())],
            )?;
            let (last, waiting) = rows
                .rows
                .first()
                .map(|r| (int(r, 0), int(r, 1) == 1))
                .unwrap_or_default();
            Ok(match position(last, env.seq) {
                Position::Next if waiting => Position::Behind,
                other => other,
            })
        }

        fn inbox_record(&self, env: &Envelope) -> anyhow::Result<()> {
            match self.redo.get(&env.id) {
                Some(redo) => {
                    self.exec(delete_sql(redo), &[t(&env.id)])?;
                    Ok(())
                }
                None => advance(self, env),
            }
        }
    }

    fn exists_sql(redo: Redo) -> &'static str {
        match redo {
            Redo::Pending => "SELECT 1 FROM pending_events WHERE id = ?",
            Redo::Parked => "SELECT 1 FROM dead_letters WHERE id = ?",
        }
    }

    fn delete_sql(redo: Redo) -> &'static str {
        match redo {
            Redo::Pending => "DELETE FROM pending_events WHERE id = ?",
            Redo::Parked => "DELETE FROM dead_letters WHERE id = ?",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn positions() {
        assert_eq!(position(0, 1), Position::Next);
        assert_eq!(position(5, 5), Position::Duplicate);
        assert_eq!(position(5, 3), Position::Duplicate);
        assert_eq!(position(5, 8), Position::Gap { last: 5 });
    }

    #[derive(Default)]
    struct Mem(RefCell<Streams>, RefCell<u32>);

    impl InboxPort for Mem {
        fn inbox_position(&self, env: &Envelope) -> anyhow::Result<Position> {
            Ok(position(
                self.0.borrow().last(&env.source, env.partition),
                env.seq,
            ))
        }
        fn inbox_record(&self, env: &Envelope) -> anyhow::Result<()> {
            self.0.borrow_mut().advance(env);
            Ok(())
        }
    }

    use crate::testing::envelope as env;

    #[test]
    fn the_effect_runs_once_and_only_in_order() {
        let m = Mem::default();
        let bump = |m: &Mem| {
            *m.1.borrow_mut() += 1;
            Ok(())
        };
        assert_eq!(guarded(&m, &env(1), bump).unwrap(), Outcome::Applied);
        assert_eq!(guarded(&m, &env(1), bump).unwrap(), Outcome::Duplicate);
        assert_eq!(
            guarded(&m, &env(3), bump).unwrap(),
            Outcome::Gap { last: 1 }
        );
        assert_eq!(*m.1.borrow(), 1);
        assert_eq!(m.0.borrow().last("orders", 0), 1);
    }

    #[test]
    fn streams_are_independent() {
        let m = Mem::default();
        let other = Envelope {
            partition: 1,
            ..env(1)
        };
        assert_eq!(guarded(&m, &env(1), |_| Ok(())).unwrap(), Outcome::Applied);
        assert_eq!(guarded(&m, &other, |_| Ok(())).unwrap(), Outcome::Applied);
        assert_eq!(m.0.borrow().last("orders", 1), 1);
    }

    #[test]
    fn a_failed_effect_does_not_advance() {
        let m = Mem::default();
        assert!(guarded(&m, &env(1), |_| anyhow::bail!("boom")).is_err());
        assert_eq!(m.0.borrow().last("orders", 0), 0);
    }
}
