//! Poison messages: an event that keeps failing to apply is parked in the consumer's
//! `dead_letters` table and its inbox moves past it, so one bad event cannot block its source
//! for ever. Failed attempts are counted in their own small transaction, because the
//! transaction of the failed effect is rolled back.

use crate::inbox::Outcome;
use crate::Envelope;

/// Attempts after which an event is parked, unless the `dead_letter_after` variable says
/// otherwise.
pub const DEFAULT_AFTER: i64 = 5;

/// Where a consumer counts failures and parks events.
pub trait DeadLetterPort {
    /// Attempts at or after which an event is parked.
    fn after(&self) -> i64;
    /// Records one more failed attempt at `env`; returns the attempts so far.
    fn count_failure(&self, env: &Envelope, error: &str) -> anyhow::Result<i64>;
    /// Parks `env` and advances the inbox past it, in one transaction, when it is the next
    /// event of its source; otherwise reports where it stands and parks nothing.
    fn park(&self, env: &Envelope, error: &str, attempts: i64) -> anyhow::Result<Outcome>;
}

/// After a failed apply: counts it, and parks `env` once it has failed often enough.
/// Returns the original error while the event still has attempts left.
pub fn on_failure(
    port: &dyn DeadLetterPort,
    env: &Envelope,
    error: anyhow::Error,
) -> anyhow::Result<Outcome> {
    let message = format!("{error:#}");
    let attempts = port.count_failure(env, &message)?;
    if attempts < port.after() {
        return Err(error);
    }
    port.park(env, &message, attempts)
}

/// SQL for consumers whose store is SQLite (tables `delivery_failures`, `dead_letters`).
pub mod sql {
    use serde_json::json;

    use crate::inbox::{self, position, Outcome, Position};
    use crate::sqlite::{i, int, t, text, Db};
    use crate::Envelope;

    /// The dead-letter port of one SQLite database.
    pub struct SqlDeadLetters<'a> {
        pub db: &'a Db,
        pub after: i64,
    }

    impl<'a> SqlDeadLetters<'a> {
        /// Reads the threshold from the `dead_letter_after` variable.
        pub fn new(db: &'a Db) -> Self {
            let after = crate::config::num_or("dead_letter_after", super::DEFAULT_AFTER).max(1);
            SqlDeadLetters { db, after }
        }
    }

    impl super::DeadLetterPort for SqlDeadLetters<'_> {
        fn after(&self) -> i64 {
            self.after
        }

        fn count_failure(&self, env: &Envelope, error: &str) -> anyhow::Result<i64> {
            let db = self.db;
            db.transaction(|| {
                db.exec(
                    "INSERT INTO delivery_failures (source, seq, attempts, error) \
                     VALUES (?, ?, 1, ?) ON CONFLICT(source, seq) \
                     DO UPDATE SET attempts = attempts + 1, error = excluded.error",
                    &[t(&env.source), i(env.seq), t(error)],
                )?;
                let rows = db.exec(
                    "SELECT attempts FROM delivery_failures WHERE source = ? AND seq = ?",
                    &[t(&env.source), i(env.seq)],
                )?;
                Ok(rows.rows.first().map(|r| int(r, 0)).unwrap_or(1))
            })
        }

        fn park(&self, env: &Envelope, error: &str, attempts: i64) -> anyhow::Result<Outcome> {
            let db = self.db;
            db.transaction(
                || match position(inbox::sql::last(db, &env.source)?, env.seq) {
                    Position::Duplicate => Ok(Outcome::Duplicate),
                    Position::Gap { last } => Ok(Outcome::Gap { last }),
                    Position::Next => {
                        db.exec(
                            "INSERT OR REPLACE INTO dead_letters \
                         (source, seq, type, payload, error, attempts, parked_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?)",
                            &[
                                t(&env.source),
                                i(env.seq),
                                t(&env.type_name),
                                t(serde_json::to_string(env)?),
                                t(error),
                                i(attempts),
                                t(crate::time::now_rfc3339()),
                            ],
                        )?;
                        db.exec(
                            "DELETE FROM delivery_failures WHERE source = ? AND seq = ?",
                            &[t(&env.source), i(env.seq)],
                        )?;
                        inbox::sql::advance(db, &env.source, env.seq)?;
                        Ok(Outcome::Parked)
                    }
                },
            )
        }
    }

    /// Every parked event, oldest first, as the admin route lists them.
    pub fn list(db: &Db) -> anyhow::Result<serde_json::Value> {
        let rows = db.exec(
            "SELECT source, seq, type, payload, error, attempts, parked_at \
             FROM dead_letters ORDER BY parked_at, source, seq",
            &[],
        )?;
        let items: Vec<_> = rows
            .rows
            .iter()
            .map(|r| {
                json!({
                    "source": text(r, 0),
                    "seq": int(r, 1),
                    "type": text(r, 2),
                    "payload": serde_json::from_str::<serde_json::Value>(&text(r, 3))
                        .unwrap_or(serde_json::Value::Null),
                    "error": text(r, 4),
                    "attempts": int(r, 5),
                    "parked_at": text(r, 6),
                })
            })
            .collect();
        Ok(json!({ "dead_letters": items }))
    }
}
