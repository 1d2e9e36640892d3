//! Poison messages: an event that keeps failing to apply is parked in the consumer's
//! `dead_letters` table and its inbox moves past it, so one bad event cannot block its source
//! for ever. Failed attempts are counted in their own small transaction, because the
//! transaction of the failed effect is rolled back.

use serde_json::{json, Value};
use spin_sdk::http::{Request, Response};

use crate::consume::Consumer;
use crate::inbox::Outcome;
use crate::routes::Params;
use crate::web::Ctx;
use crate::{ApiError, Envelope, Failure};

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

/// The `dead_letter_after` variable (at least 1), or [`DEFAULT_AFTER`].
pub fn after_from_variables() -> i64 {
    crate::config::num_or("dead_letter_after", DEFAULT_AFTER).max(1)
}

/// A parked event as the admin routes show it.
pub fn letter_json(env: &Envelope, error: &str, attempts: i64, parked_at: &str) -> Value {
    json!({
        "source": env.source,
        "seq": env.seq,
        "type": env.type_name,
        "payload": env,
        "error": error,
        "attempts": attempts,
        "parked_at": parked_at,
    })
}

/// Where a consumer keeps its parked events, for listing and replay.
pub trait ParkedStore {
    /// Every parked event (see [`letter_json`]), oldest first.
    fn parked(&self) -> anyhow::Result<Vec<Value>>;
    /// The parked event `source`/`seq`, if there is one.
    fn parked_event(&self, source: &str, seq: i64) -> anyhow::Result<Option<Envelope>>;
    /// While `letter` is set, the inbox of its source reports the position just before it and
    /// never moves back, and advancing to its seq deletes the letter with the effect.
    fn set_replaying(&self, letter: Option<(String, i64)>);
    /// Keeps a letter whose replay failed, with one more attempt and the new error.
    fn replay_failed(&self, source: &str, seq: i64, error: &str) -> anyhow::Result<()>;
}

/// `POST /<fn>/dead-letters/{source}/{seq}/replay`: applies a parked event again through the
/// consumer's own handler; success removes the letter (see [`ParkedStore::set_replaying`]),
/// a failure keeps it with the new error and answers 409.
pub async fn replay(
    store: &impl ParkedStore,
    consumer: &impl Consumer,
    source: &str,
    seq: i64,
) -> Result<Value, Failure> {
    let env = store
        .parked_event(source, seq)?
        .ok_or_else(|| ApiError::not_found(format!("no dead letter {source}/{seq}")))?;
    store.set_replaying(Some((source.to_string(), seq)));
    let result = consumer.apply(&env).await;
    store.set_replaying(None);
    let error = match result {
        Ok(Outcome::Applied) => return Ok(json!({"replayed": {"source": source, "seq": seq}})),
        Ok(other) => format!("replay did not apply the event: {other:?}"),
        Err(e) => format!("{e:#}"),
    };
    store.replay_failed(source, seq, &error)?;
    Err(ApiError::conflict(format!("replay of {source}/{seq} failed: {error}")).into())
}

/// `GET /<fn>/dead-letters` (admin).
pub fn list_route(ctx: &Ctx, req: &Request, store: &impl ParkedStore) -> Result<Response, Failure> {
    ctx.require_admin(req)?;
    Ok(crate::web::json(
        200,
        &json!({ "dead_letters": store.parked()? }),
    ))
}

/// `POST /<fn>/dead-letters/{source}/{seq}/replay` (admin).
pub async fn replay_route(
    ctx: &Ctx,
    req: &Request,
    params: &Params,
    store: &impl ParkedStore,
    consumer: &impl Consumer,
) -> Result<Response, Failure> {
    ctx.require_admin(req)?;
    let source = params.get("source");
    let seq = parse_seq(params.get("seq"))?;
    let report = replay(store, consumer, source, seq).await?;
    ctx.log
        .info(&format!("dead letter {source}/{seq} replayed"), None);
    Ok(crate::web::json(200, &report))
}

/// SQL for consumers whose store is SQLite (tables `delivery_failures`, `dead_letters`).
pub mod sql {
    use serde_json::Value;

    use crate::inbox::{self, position, Outcome, Position};
    use crate::sqlite::{i, int, t, text, Db};
    use crate::Envelope;

    impl super::DeadLetterPort for Db {
        fn after(&self) -> i64 {
            super::after_from_variables()
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

    impl super::ParkedStore for Db {
        fn parked(&self) -> anyhow::Result<Vec<Value>> {
            let rows = self.exec(
                "SELECT payload, error, attempts, parked_at FROM dead_letters \
                 ORDER BY parked_at, source, seq",
                &[],
            )?;
            rows.rows
                .iter()
                .map(|r| {
                    let env: Envelope = serde_json::from_str(&text(r, 0))?;
                    Ok(super::letter_json(
                        &env,
                        &text(r, 1),
                        int(r, 2),
                        &text(r, 3),
                    ))
                })
                .collect()
        }

        fn parked_event(&self, source: &str, seq: i64) -> anyhow::Result<Option<Envelope>> {
            let rows = self.exec(
                "SELECT payload FROM dead_letters WHERE source = ? AND seq = ?",
                &[t(source), i(seq)],
            )?;
            rows.rows
                .first()
                .map(|r| serde_json::from_str(&text(r, 0)))
                .transpose()
                .map_err(|e| anyhow::anyhow!("dead letter {source}/{seq} is unreadable: {e}"))
        }

        fn set_replaying(&self, letter: Option<(String, i64)>) {
            Db::set_replaying(self, letter);
        }

        fn replay_failed(&self, source: &str, seq: i64, error: &str) -> anyhow::Result<()> {
            self.exec(
                "UPDATE dead_letters SET error = ?, attempts = attempts + 1 \
                 WHERE source = ? AND seq = ?",
                &[t(error), t(source), i(seq)],
            )?;
            Ok(())
        }
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
