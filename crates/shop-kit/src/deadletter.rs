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

/// Marks a failure that says nothing about the event (a provider that is down): it is retried
/// for ever and never parked, so the event completes once the dependency is back.
#[derive(Debug)]
pub struct Transient;

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("temporarily unavailable")
    }
}

/// `error`, marked as [`Transient`].
pub fn transient(error: anyhow::Error) -> anyhow::Error {
    error.context(Transient)
}

/// After a failed apply: counts it, and parks `env` once it has failed often enough.
/// Returns the original error while the event still has attempts left, and always for a
/// [`Transient`] failure.
pub fn on_failure(
    port: &dyn DeadLetterPort,
    env: &Envelope,
    error: anyhow::Error,
) -> anyhow::Result<Outcome> {
    if error.downcast_ref::<Transient>().is_some() {
        return Err(error);
    }
    let message = format!("{error:#}");
    let attempts = port.count_failure(env, &message)?;
    if attempts < port.after() {
        return Err(error);
    }
    port.park(env, &message, attempts)
}

/// A `{seq}` path parameter: a positive integer.
pub fn parse_seq(raw: &str) -> Result<i64, crate::ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| crate::ApiError::invalid("seq", "must be a positive integer"))
}

/// SQL for consumers whose store is SQLite (tables `delivery_failures`, `dead_letters`).
pub mod sql {
    use serde_json::json;

    use crate::consume::Consumer;
    use crate::inbox::{self, position, Outcome, Position};
    use crate::sqlite::{i, int, t, text, Db};
    use crate::{ApiError, Envelope, Failure};

    impl super::DeadLetterPort for Db {
        fn after(&self) -> i64 {
            crate::config::num_or("dead_letter_after", super::DEFAULT_AFTER).max(1)
        }

        fn count_failure(&self, env: &Envelope, error: &str) -> anyhow::Result<i64> {
            self.transaction(|| {
                self.exec(
                    "INSERT INTO delivery_failures (source, seq, attempts, error) \
                     VALUES (?, ?, 1, ?) ON CONFLICT(source, seq) \
                     DO UPDATE SET attempts = attempts + 1, error = excluded.error",
                    &[t(&env.source), i(env.seq), t(error)],
                )?;
                let rows = self.exec(
                    "SELECT attempts FROM delivery_failures WHERE source = ? AND seq = ?",
                    &[t(&env.source), i(env.seq)],
                )?;
                Ok(rows.rows.first().map(|r| int(r, 0)).unwrap_or(1))
            })
        }

        fn park(&self, env: &Envelope, error: &str, attempts: i64) -> anyhow::Result<Outcome> {
            self.transaction(
                || match position(inbox::sql::last(self, &env.source)?, env.seq) {
                    Position::Duplicate => Ok(Outcome::Duplicate),
                    Position::Gap { last } => Ok(Outcome::Gap { last }),
                    Position::Next => {
                        self.exec(
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
                        self.exec(
                            "DELETE FROM delivery_failures WHERE source = ? AND seq = ?",
                            &[t(&env.source), i(env.seq)],
                        )?;
                        inbox::sql::advance(self, &env.source, env.seq)?;
                        Ok(Outcome::Parked)
                    }
                },
            )
        }
    }

    fn letter(r: &spin_sdk::sqlite::RowResult) -> serde_json::Value {
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
    }

    const COLUMNS: &str = "source, seq, type, payload, error, attempts, parked_at";

    /// `GET /<fn>/dead-letters`: every parked event, oldest first.
    pub fn list(db: &Db) -> anyhow::Result<serde_json::Value> {
        let rows = db.exec(
            &format!("SELECT {COLUMNS} FROM dead_letters ORDER BY parked_at, source, seq"),
            &[],
        )?;
        let items: Vec<_> = rows.rows.iter().map(letter).collect();
        Ok(json!({ "dead_letters": items }))
    }

    /// `POST /<fn>/dead-letters/{source}/{seq}/replay`: applies a parked event again through
    /// the consumer's own handler. While it runs, the inbox of `db` reports the position just
    /// before the event, and the effect's transaction deletes the dead letter when it advances
    /// past it, so success removes the letter atomically with the effect. A failure keeps the
    /// letter with the new error and answers 409.
    pub async fn replay(
        db: &Db,
        consumer: &impl Consumer,
        source: &str,
        seq: i64,
    ) -> Result<serde_json::Value, Failure> {
        let rows = db.exec(
            &format!("SELECT {COLUMNS} FROM dead_letters WHERE source = ? AND seq = ?"),
            &[t(source), i(seq)],
        )?;
        let row = rows
            .rows
            .first()
            .ok_or_else(|| ApiError::not_found(format!("no dead letter {source}/{seq}")))?;
        let env: Envelope = serde_json::from_str(&text(row, 3))
            .map_err(|e| anyhow::anyhow!("dead letter {source}/{seq} is unreadable: {e}"))?;
        db.set_replaying(Some((source.to_string(), seq)));
        let result = consumer.apply(&env).await;
        db.set_replaying(None);
        let error = match result {
            Ok(Outcome::Applied) => return Ok(json!({"replayed": {"source": source, "seq": seq}})),
            Ok(other) => format!("replay did not apply the event: {other:?}"),
            Err(e) => format!("{e:#}"),
        };
        db.exec(
            "UPDATE dead_letters SET error = ?, attempts = attempts + 1 \
             WHERE source = ? AND seq = ?",
            &[t(&error), t(source), i(seq)],
        )?;
        Err(ApiError::conflict(format!("replay of {source}/{seq} failed: {error}")).into())
    }

    /// `GET /<fn>/dead-letters` (admin).
    pub fn list_route(
        ctx: &crate::web::Ctx,
        req: &spin_sdk::http::Request,
        db: &Db,
    ) -> Result<spin_sdk::http::Response, Failure> {
        ctx.require_admin(req)?;
        Ok(crate::web::json(200, &list(db)?))
    }

    /// `POST /<fn>/dead-letters/{source}/{seq}/replay` (admin).
    pub async fn replay_route(
        ctx: &crate::web::Ctx,
        req: &spin_sdk::http::Request,
        params: &crate::routes::Params,
        db: &Db,
        consumer: &impl Consumer,
    ) -> Result<spin_sdk::http::Response, Failure> {
        ctx.require_admin(req)?;
        let source = params.get("source");
        let seq = super::parse_seq(params.get("seq"))?;
        let report = replay(db, consumer, source, seq).await?;
        crate::relay::publish(ctx.service, db, &ctx.log);
        ctx.log
            .info(&format!("dead letter {source}/{seq} replayed"), None);
        Ok(crate::web::json(200, &report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parks at the first failure.
    struct Eager;

    impl DeadLetterPort for Eager {
        fn after(&self) -> i64 {
            1
        }
        fn count_failure(&self, _: &Envelope, _: &str) -> anyhow::Result<i64> {
            Ok(1)
        }
        fn park(&self, _: &Envelope, _: &str, _: i64) -> anyhow::Result<Outcome> {
            Ok(Outcome::Parked)
        }
    }

    fn env() -> Envelope {
        Envelope {
            id: "e1".into(),
            type_name: "x".into(),
            source: "orders".into(),
            seq: 1,
            occurred_at: String::new(),
            traceparent: String::new(),
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_transient_failure_is_never_parked() {
        let down = transient(anyhow::anyhow!("provider down"));
        let err = on_failure(&Eager, &env(), down).unwrap_err();
        assert!(format!("{err:#}").contains("provider down"));
        let poison = on_failure(&Eager, &env(), anyhow::anyhow!("bad data")).unwrap();
        assert_eq!(poison, Outcome::Parked);
    }

    #[test]
    fn seq_must_be_a_positive_integer() {
        assert_eq!(parse_seq("7").unwrap(), 7);
        for bad in ["0", "-1", "x", ""] {
            assert_eq!(parse_seq(bad).unwrap_err().code.status(), 400, "{bad}");
        }
    }
}
