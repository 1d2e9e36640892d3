//! Idempotent, ordered consumption: a consumer remembers the last `seq` it applied per source,
//! in the same transaction as the effect.

use crate::Envelope;

/// Where an incoming event stands relative to what was already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Already applied: ignore.
    Duplicate,
    /// The very next one: apply.
    Next,
    /// Events between `last` and this one are missing: fill from the feed first.
    Gap { last: i64 },
}

pub fn position(last: i64, seq: i64) -> Position {
    if seq <= last {
        Position::Duplicate
    } else if seq == last + 1 {
        Position::Next
    } else {
        Position::Gap { last }
    }
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Gap {
        last: i64,
    },
    /// Failed too often: parked as a dead letter, and the inbox moved past it.
    Parked,
}

/// The inbox as a transaction sees it.
pub trait InboxPort {
    fn inbox_last(&self, source: &str) -> anyhow::Result<i64>;
    fn inbox_advance(&self, source: &str, seq: i64) -> anyhow::Result<()>;
    /// Where events that keep failing are parked; `None` retries them for ever.
    fn dead_letters(&self) -> Option<&dyn crate::deadletter::DeadLetterPort> {
        None
    }
}

/// Runs `effect` only when `env` is the next event of its source, and records it as applied.
/// Call inside the transaction that also holds the effect.
pub fn guarded<T: InboxPort + ?Sized>(
    tx: &T,
    env: &Envelope,
    effect: impl FnOnce(&T) -> anyhow::Result<()>,
) -> anyhow::Result<Outcome> {
    match position(tx.inbox_last(&env.source)?, env.seq) {
        Position::Duplicate => Ok(Outcome::Duplicate),
        Position::Gap { last } => Ok(Outcome::Gap { last }),
        Position::Next => {
            effect(tx)?;
            tx.inbox_advance(&env.source, env.seq)?;
            Ok(Outcome::Applied)
        }
    }
}

/// SQL for consumers whose inbox lives in SQLite (table `inbox(source, last_seq)`).
pub mod sql {
    use super::InboxPort;
    use crate::deadletter::DeadLetterPort;
    use crate::sqlite::{int, Db};
    use spin_sdk::sqlite::Value;

    /// A store kept in one SQLite database. Its inbox and dead letters live in that database,
    /// so implementing this one accessor gives the store its `InboxPort`.
    pub trait SqlBacked {
        fn db(&self) -> &Db;
    }

    impl<T: SqlBacked> InboxPort for T {
        fn inbox_last(&self, source: &str) -> anyhow::Result<i64> {
            last(self.db(), source)
        }

        fn inbox_advance(&self, source: &str, seq: i64) -> anyhow::Result<()> {
            advance(self.db(), source, seq)
        }

        fn dead_letters(&self) -> Option<&dyn DeadLetterPort> {
            Some(self.db())
        }
    }

    pub fn last(db: &Db, source: &str) -> anyhow::Result<i64> {
        if let Some(seq) = db.replaying(source) {
            return Ok(seq - 1);
        }
        let rows = db.exec(
            "SELECT last_seq FROM inbox WHERE source = ?",
            &[Value::Text(source.into())],
        )?;
        Ok(rows.rows.first().map(|r| int(r, 0)).unwrap_or(0))
    }

    /// Never moves back: a replayed dead letter advances to its own seq, behind the inbox.
    pub fn advance(db: &Db, source: &str, seq: i64) -> anyhow::Result<()> {
        db.exec(
            "INSERT INTO inbox (source, last_seq) VALUES (?, ?) \
             ON CONFLICT(source) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
            &[Value::Text(source.into()), Value::Integer(seq)],
        )?;
        if db.replaying(source) == Some(seq) {
            db.exec(
                "DELETE FROM dead_letters WHERE source = ? AND seq = ?",
                &[Value::Text(source.into()), Value::Integer(seq)],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[test]
    fn positions() {
        assert_eq!(position(0, 1), Position::Next);
        assert_eq!(position(5, 5), Position::Duplicate);
        assert_eq!(position(5, 3), Position::Duplicate);
        assert_eq!(position(5, 8), Position::Gap { last: 5 });
    }

    #[derive(Default)]
    struct Mem(RefCell<HashMap<String, i64>>, RefCell<u32>);

    impl InboxPort for Mem {
        fn inbox_last(&self, source: &str) -> anyhow::Result<i64> {
            Ok(*self.0.borrow().get(source).unwrap_or(&0))
        }
        fn inbox_advance(&self, source: &str, seq: i64) -> anyhow::Result<()> {
            self.0.borrow_mut().insert(source.into(), seq);
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
        assert_eq!(m.inbox_last("orders").unwrap(), 1);
    }

    #[test]
    fn a_failed_effect_does_not_advance() {
        let m = Mem::default();
        assert!(guarded(&m, &env(1), |_| anyhow::bail!("boom")).is_err());
        assert_eq!(m.inbox_last("orders").unwrap(), 0);
    }
}
