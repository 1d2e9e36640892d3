//! Events a consumer could not apply when they arrived. Such an event leaves its stream at
//! once and waits here on a schedule of its own: retried with backoff, and parked as a dead
//! letter after [`PendingPort::after`] failed attempts of any kind. Later events of the same
//! order from the same source wait behind it (`inbox::Position::Behind`), other orders'
//! events never do.

use crate::inbox::Outcome;
use crate::redo::Redo;
use crate::Envelope;

/// Failed attempts after which an event is parked, unless the `dead_letter_after` variable
/// says otherwise.
pub const DEFAULT_AFTER: i64 = 5;
/// Delay before the first retry; each failure doubles it up to [`MAX_DELAY_MS`].
const FIRST_DELAY_MS: i64 = 500;
/// The longest wait between two attempts: a dependency that comes back is retried within it.
pub const MAX_DELAY_MS: i64 = 5_000;

/// How long to wait after `attempts` failed attempts.
pub fn delay_ms(attempts: i64) -> i64 {
    let doublings = attempts.clamp(1, 16) - 1;
    (FIRST_DELAY_MS << doublings).min(MAX_DELAY_MS)
}

/// The `dead_letter_after` variable (at least 1), or [`DEFAULT_AFTER`].
pub fn after_from_variables() -> i64 {
    crate::config::num_or("dead_letter_after", DEFAULT_AFTER).max(1)
}

/// Marks a failure where nothing was tried (a circuit breaker that is open): it does not
/// count as an attempt, and the event is retried when the breaker lets calls through again.
#[derive(Debug)]
pub struct NotAttempted {
    pub retry_in_ms: i64,
}

impl std::fmt::Display for NotAttempted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not attempted; retry in {} ms", self.retry_in_ms)
    }
}

impl std::error::Error for NotAttempted {}

/// When `error` says nothing was attempted: how long to wait before trying again.
pub fn not_attempted(error: &anyhow::Error) -> Option<i64> {
    error
        .downcast_ref::<NotAttempted>()
        .map(|n| n.retry_in_ms.clamp(0, MAX_DELAY_MS))
}

/// An event waiting outside its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub env: Envelope,
    /// Failed attempts so far (0 for an event that only waits behind another).
    pub attempts: i64,
    pub error: String,
}

impl Pending {
    /// `env` about to wait before any failed attempt, for `error`.
    pub fn unattempted(env: &Envelope, error: impl Into<String>) -> Self {
        Self {
            env: env.clone(),
            attempts: 0,
            error: error.into(),
        }
    }
}

/// Announces that `consumer` parked `p`, through `emit` (the function's outbox, in the parking
/// transaction), so that orders notes it in the order's history.
pub fn announce_parked(
    consumer: &str,
    p: &Pending,
    emit: impl FnOnce(&shop_events::ShopEvent, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let event = shop_events::ShopEvent::EventParked(shop_events::EventParked {
        order_id: p.env.order_id().to_string(),
        consumer: consumer.to_string(),
        event_id: p.env.id.clone(),
        event_type: p.env.type_name.clone(),
        error: p.error.clone(),
    });
    emit(&event, &p.env.traceparent)
}

/// Where a consumer keeps its pending events.
pub trait PendingPort {
    /// Failed attempts at or after which an event is parked.
    fn after(&self) -> i64;
    /// In one transaction, when `env` is the next event of its stream (`Next` or `Behind`):
    /// keeps it pending, due at `next_at_ms`, and moves the stream past it. Otherwise nothing
    /// is written and the outcome says where it stands.
    fn defer(&self, pending: &Pending, next_at_ms: i64) -> anyhow::Result<Outcome>;
    /// Up to `limit` pending events due at `now_ms`, each the first pending event of its
    /// order and source; the earliest due first.
    fn due(&self, now_ms: i64, limit: i64) -> anyhow::Result<Vec<Pending>>;
    /// When the earliest such event falls due; `None` when nothing is pending.
    fn next_due_at(&self) -> anyhow::Result<Option<i64>>;
    /// Records a failed retry: the attempts so far, the error and when to try again.
    fn reschedule(&self, pending: &Pending, next_at_ms: i64) -> anyhow::Result<()>;
    /// In one transaction: moves the pending event to the dead letters, then runs `also`
    /// (a function's own record of it, e.g. the order's history).
    fn park(&self, pending: &Pending, also: &dyn Fn() -> anyhow::Result<()>) -> anyhow::Result<()>;
    /// Marks the event being retried (or clears the mark), see `redo`.
    fn redo(&self, event: Option<(&str, Redo)>);
}

/// SQL for consumers with a SQL store: table `pending_events`.
pub mod sql {
    use super::{Pending, PendingPort};
    use crate::inbox::{self, InboxPort, Outcome, Position};
    use crate::redo::Redo;
    use crate::sql::{i, int, opt_int, t, text, Db};
    use crate::Envelope;

    /// Pending events that are the first of their order and source. `?1` now, `?2` limit.
    pub const DUE: &str = "SELECT payload, attempts, error FROM pending_events p \
        WHERE next_at <= ?1 AND NOT EXISTS (SELECT 1 FROM pending_events q \
          WHERE q.source = p.source AND q.order_key = p.order_key \
          AND (q.partition, q.seq) < (p.partition, p.seq)) \
        ORDER BY next_at, partition, seq LIMIT ?2";
    pub const NEXT_DUE: &str = "SELECT min(next_at) FROM pending_events p \
        WHERE NOT EXISTS (SELECT 1 FROM pending_events q \
          WHERE q.source = p.source AND q.order_key = p.order_key \
          AND (q.partition, q.seq) < (p.partition, p.seq))";

    fn pending(db: &Db, sql: &str, params: &[crate::sql::Value]) -> anyhow::Result<Vec<Pending>> {
        db.exec(sql, params)?
            .rows
            .iter()
            .map(|r| {
                Ok(Pending {
                    env: serde_json::from_str(&text(r, 0))?,
                    attempts: int(r, 1),
                    error: text(r, 2),
                })
            })
            .collect()
    }

    impl PendingPort for Db {
        fn after(&self) -> i64 {
            super::after_from_variables()
        }

        fn defer(&self, p: &Pending, next_at_ms: i64) -> anyhow::Result<Outcome> {
            let env: &Envelope = &p.env;
            self.transaction(|| match self.inbox_position(env)? {
                Position::Next | Position::Behind => {
                    self.exec(
                        "INSERT INTO pending_events \
                         (id, source, partition, seq, order_key, payload, attempts, next_at, error) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET \
                         payload = excluded.payload, attempts = excluded.attempts, \
                         next_at = excluded.next_at, error = excluded.error",
                        &[
                            t(&env.id),
                            t(&env.source),
                            i(env.partition),
                            i(env.seq),
                            t(env.order_id()),
                            t(serde_json::to_string(env)?),
                            i(p.attempts),
                            i(next_at_ms),
                            t(&p.error),
                        ],
                    )?;
                    inbox::sql::advance(self, env)?;
                    Ok(Outcome::Deferred)
                }
                other => Ok(other.into()),
            })
        }

        fn due(&self, now_ms: i64, limit: i64) -> anyhow::Result<Vec<Pending>> {
            pending(self, DUE, &[i(now_ms), i(limit)])
        }

        fn next_due_at(&self) -> anyhow::Result<Option<i64>> {
            Ok(self
                .exec(NEXT_DUE, &[])?
                .rows
                .first()
                .and_then(|r| opt_int(r, 0)))
        }

        fn reschedule(&self, p: &Pending, next_at_ms: i64) -> anyhow::Result<()> {
            self.exec(
                "UPDATE pending_events SET attempts = ?, error = ?, next_at = ? WHERE id = ?",
                &[i(p.attempts), t(&p.error), i(next_at_ms), t(&p.env.id)],
            )?;
            Ok(())
        }

        fn park(&self, p: &Pending, also: &dyn Fn() -> anyhow::Result<()>) -> anyhow::Result<()> {
            let env = &p.env;
            self.transaction(|| {
                let gone = self.exec(
                    "DELETE FROM pending_events WHERE id = ? RETURNING id",
                    &[t(&env.id)],
                )?;
                if gone.rows.is_empty() {
                    return Ok(()); // applied or parked meanwhile by another instance
                }
                self.exec(
                    "INSERT INTO dead_letters \
                     (id, source, partition, seq, order_key, type, payload, error, attempts, \
                      parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE \
                     SET payload = excluded.payload, error = excluded.error, \
                     attempts = excluded.attempts, parked_at = excluded.parked_at",
                    &[
                        t(&env.id),
                        t(&env.source),
                        i(env.partition),
                        i(env.seq),
                        t(env.order_id()),
                        t(&env.type_name),
                        t(serde_json::to_string(env)?),
                        t(&p.error),
                        i(p.attempts),
                        t(crate::time::now_rfc3339()),
                    ],
                )?;
                also()
            })
        }

        fn redo(&self, event: Option<(&str, Redo)>) {
            self.redo.set(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        assert_eq!(delay_ms(1), 500);
        assert_eq!(delay_ms(2), 1_000);
        assert_eq!(delay_ms(4), 4_000);
        assert_eq!(delay_ms(5), MAX_DELAY_MS);
        assert_eq!(delay_ms(100), MAX_DELAY_MS);
    }

    #[test]
    fn an_open_breaker_is_not_an_attempt() {
        let refused = anyhow::Error::new(NotAttempted { retry_in_ms: 700 }).context("billing");
        assert_eq!(not_attempted(&refused), Some(700));
        assert_eq!(not_attempted(&anyhow::anyhow!("boom")), None);
    }
}
