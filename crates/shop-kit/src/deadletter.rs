//! Dead letters: events parked after failing too often (`pending`), listed and replayed by an
//! admin. A replay applies the event again through the consumer's own handler; while it runs,
//! the inbox sees the letter as the event waiting to be applied (`redo`), and applying it
//! deletes the letter in the effect's transaction.

use serde_json::{json, Value};
use spin_sdk::http::{Request, Response};

use crate::consume::Consumer;
use crate::inbox::Outcome;
use crate::redo::Redo;
use crate::routes::Params;
use crate::web::Ctx;
use crate::{ApiError, Envelope, Failure};

/// A parked event as the admin routes show it.
pub fn letter_json(env: &Envelope, error: &str, attempts: i64, parked_at: &str) -> Value {
    json!({
        "id": env.id,
        "source": env.source,
        "partition": env.partition,
        "seq": env.seq,
        "type": env.type_name,
        "order_id": env.order_id(),
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
    /// The parked event with id `id`, if there is one.
    fn parked_event(&self, id: &str) -> anyhow::Result<Option<Envelope>>;
    /// Marks the event being replayed (see `redo`), or clears the mark.
    fn set_redo(&self, event: Option<(&str, Redo)>);
    /// Keeps a letter whose replay failed, with one more attempt and the new error.
    fn replay_failed(&self, id: &str, error: &str) -> anyhow::Result<()>;
}

/// Applies the parked event `id` again through the consumer's own handler; success removes
/// the letter, a failure keeps it with the new error and answers 409.
pub async fn replay(
    store: &impl ParkedStore,
    consumer: &impl Consumer,
    id: &str,
) -> Result<Value, Failure> {
    let env = store
        .parked_event(id)?
        .ok_or_else(|| ApiError::not_found(format!("no dead letter {id}")))?;
    store.set_redo(Some((id, Redo::Parked)));
    let result = consumer.apply(&env).await;
    store.set_redo(None);
    let error = match result {
        Ok(Outcome::Applied) => {
            return Ok(json!({"replayed": {"id": id, "source": env.source, "seq": env.seq}}))
        }
        Ok(other) => format!("replay did not apply the event: {other:?}"),
        Err(e) => format!("{e:#}"),
    };
    store.replay_failed(id, &error)?;
    Err(ApiError::conflict(format!("replay of {id} failed: {error}")).into())
}

/// `GET /<fn>/dead-letters` (admin).
pub fn list_route(ctx: &Ctx, req: &Request, store: &impl ParkedStore) -> Result<Response, Failure> {
    ctx.require_admin(req)?;
    Ok(crate::web::json(
        200,
        &json!({ "dead_letters": store.parked()? }),
    ))
}

/// `POST /<fn>/dead-letters/{id}/replay` (admin).
pub async fn replay_route(
    ctx: &Ctx,
    req: &Request,
    params: &Params,
    store: &impl ParkedStore,
    consumer: &impl Consumer,
) -> Result<Response, Failure> {
    ctx.require_admin(req)?;
    let id = params.get("id");
    let report = replay(store, consumer, id).await?;
    ctx.log.info(&format!("dead letter {id} replayed"), None);
    Ok(crate::web::json(200, &report))
}

/// SQL for consumers with a SQL store (table `dead_letters`).
pub mod sql {
    use serde_json::Value;

    use crate::inbox::sql::SqlBacked;
    use crate::redo::Redo;
    use crate::sql::{int, t, text, Db};
    use crate::Envelope;

    /// A store kept in one SQL database keeps its dead letters there.
    impl<T: SqlBacked> super::ParkedStore for T {
        fn parked(&self) -> anyhow::Result<Vec<Value>> {
            self.db().parked()
        }
        fn parked_event(&self, id: &str) -> anyhow::Result<Option<Envelope>> {
            self.db().parked_event(id)
        }
        fn set_redo(&self, event: Option<(&str, Redo)>) {
            self.db().set_redo(event)
        }
        fn replay_failed(&self, id: &str, error: &str) -> anyhow::Result<()> {
            self.db().replay_failed(id, error)
        }
    }

    impl super::ParkedStore for Db {
        fn parked(&self) -> anyhow::Result<Vec<Value>> {
            let rows = self.exec(
                "SELECT payload, error, attempts, parked_at FROM dead_letters \
                 ORDER BY parked_at, source, partition, seq",
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

        fn parked_event(&self, id: &str) -> anyhow::Result<Option<Envelope>> {
            let rows = self.exec("SELECT payload FROM dead_letters WHERE id = ?", &[t(id)])?;
            rows.rows
                .first()
                .map(|r| serde_json::from_str(&text(r, 0)))
                .transpose()
                .map_err(|e| anyhow::anyhow!("dead letter {id} is unreadable: {e}"))
        }

        fn set_redo(&self, event: Option<(&str, Redo)>) {
            self.redo.set(event);
        }

        fn replay_failed(&self, id: &str, error: &str) -> anyhow::Result<()> {
            self.exec(
                "UPDATE dead_letters SET error = ?, attempts = attempts + 1 WHERE id = ?",
                &[t(error), t(id)],
            )?;
            Ok(())
        }
    }
}
