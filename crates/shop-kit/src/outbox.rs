//! Transactional outbox: an event is written in the same transaction as the state change
//! that causes it (table `outbox`, `seq INTEGER PRIMARY KEY` so it is gap-free per source),
//! handed to its consumers after commit (`relay`), and served as the source's feed.

use serde_json::json;
use shop_events::ShopEvent;

use crate::envelope::channel;
use crate::sqlite::{i, int, t, text, Db};
use crate::{ApiError, Envelope};

/// Largest page the feed serves.
pub const MAX_PAGE: i64 = 500;

/// Appends `event`; call inside the transaction of the state change.
pub fn append(db: &Db, event: &ShopEvent, traceparent: &str) -> anyhow::Result<()> {
    db.exec(
        "INSERT INTO outbox (id, type, occurred_at, traceparent, data) VALUES (?, ?, ?, ?, ?)",
        &[
            t(uuid::Uuid::new_v4().to_string()),
            t(event.type_name()),
            t(crate::time::now_rfc3339()),
            t(traceparent),
            t(event.data().to_string()),
        ],
    )?;
    Ok(())
}

const COLUMNS: &str = "seq, id, type, occurred_at, traceparent, data";

fn envelopes(
    db: &Db,
    source: &str,
    sql: &str,
    params: &[spin_sdk::sqlite::Value],
) -> anyhow::Result<Vec<Envelope>> {
    db.exec(sql, params)?
        .rows
        .iter()
        .map(|row| {
            Ok(Envelope {
                seq: int(row, 0),
                id: text(row, 1),
                type_name: text(row, 2),
                source: source.to_string(),
                occurred_at: text(row, 3),
                traceparent: text(row, 4),
                data: serde_json::from_str(&text(row, 5))?,
            })
        })
        .collect()
}

/// Events with `seq > after`, oldest first.
pub fn page(db: &Db, source: &str, after: i64, limit: i64) -> anyhow::Result<Vec<Envelope>> {
    envelopes(
        db,
        source,
        &format!("SELECT {COLUMNS} FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"),
        &[i(after), i(limit)],
    )
}

/// Up to `limit` unpublished events, oldest first.
pub fn unpublished(db: &Db, source: &str, limit: i64) -> anyhow::Result<Vec<Envelope>> {
    envelopes(
        db,
        source,
        &format!("SELECT {COLUMNS} FROM outbox WHERE published = 0 ORDER BY seq LIMIT ?"),
        &[i(limit)],
    )
}

/// Marks every event up to `seq` published.
pub fn mark_published(db: &Db, seq: i64) -> anyhow::Result<()> {
    db.exec(
        "UPDATE outbox SET published = 1 WHERE published = 0 AND seq <= ?",
        &[i(seq)],
    )?;
    Ok(())
}

/// How long one instance may hold a source's publishing lease before another may take it
/// over: an instance stopped mid-publish must not hold up its source's events for good.
const LEASE_MS: i64 = 10_000;

/// Rounds one instance publishes in before it leaves the rest to later publishers and the
/// sweep, so a handler ends even while new events keep coming.
const MAX_ROUNDS: usize = 32;

/// Publishes every unpublished event on `shop.<source>`, oldest first, and marks each
/// published. Stops at the first failure: the rest stay for the next publish or sweep.
///
/// One instance at a time publishes a source, under a lease row (`relay_lease`), so that each
/// event goes out once and in seq order. The lease is taken and given back in short
/// transactions: the publishes themselves run outside any write lock, which would otherwise
/// keep every other writer of the database (new orders, say) waiting on Redis round trips.
/// An instance that finds the lease taken leaves its events to the holder, which looks again
/// after giving the lease back, so an event committed before that is never left behind.
pub fn publish_to_redis(db: &Db, source: &str, redis_address: &str) -> anyhow::Result<usize> {
    let mut sent = 0;
    let mut conn = None;
    for _ in 0..MAX_ROUNDS {
        // Cheap check first, so that handlers with nothing to publish take no write lock.
        if unpublished(db, source, 1)?.is_empty() {
            break;
        }
        let conn = match &conn {
            Some(conn) => conn,
            None => conn.insert(
                spin_sdk::redis::Connection::open(redis_address)
                    .map_err(|e| anyhow::anyhow!("redis {redis_address}: {e:?}"))?,
            ),
        };
        let holder = uuid::Uuid::new_v4().to_string();
        if !take_lease(db, source, &holder)? {
            break;
        }
        let pending = unpublished(db, source, 200);
        let chan = channel(source);
        let mut last = None;
        let mut failure = None;
        for env in pending.iter().flatten() {
            let published = serde_json::to_vec(env)
                .map_err(anyhow::Error::from)
                .and_then(|payload| {
                    conn.publish(&chan, &payload)
                        .map_err(|e| anyhow::anyhow!("publish to {chan}: {e:?}"))
                });
            match published {
                Ok(()) => last = Some(env.seq),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // What went out is marked even when a later publish failed: consumers ignore repeats,
        // but fewer repeats is less work.
        db.transaction(|| {
            if let Some(last) = last {
                mark_published(db, last)?;
            }
            give_back_lease(db, source, &holder)
        })?;
        let pending = pending?;
        if let Some(e) = failure {
            return Err(e);
        }
        sent += pending.len();
    }
    Ok(sent)
}

/// Takes `source`'s publishing lease for `holder` unless another holds it and it has not
/// expired.
fn take_lease(db: &Db, source: &str, holder: &str) -> anyhow::Result<bool> {
    let now = crate::time::now_millis();
    db.exec(
        "INSERT INTO relay_lease (source, holder, expires_at) VALUES (?, ?, ?) \
         ON CONFLICT(source) DO UPDATE SET holder = excluded.holder, \
         expires_at = excluded.expires_at WHERE relay_lease.expires_at < ?",
        &[t(source), t(holder), i(now + LEASE_MS), i(now)],
    )?;
    let rows = db
        .exec(
            "SELECT holder FROM relay_lease WHERE source = ?",
            &[t(source)],
        )?
        .rows;
    Ok(rows.first().is_some_and(|row| text(row, 0) == holder))
}

fn give_back_lease(db: &Db, source: &str, holder: &str) -> anyhow::Result<()> {
    db.exec(
        "DELETE FROM relay_lease WHERE source = ? AND holder = ?",
        &[t(source), t(holder)],
    )?;
    Ok(())
}

/// Parses `after` and `limit` of `GET /<fn>/events`.
pub fn feed_params(query: &[(String, String)]) -> Result<(i64, i64), ApiError> {
    let mut after = 0;
    let mut limit = 100;
    for (k, v) in query {
        match k.as_str() {
            "after" => {
                after =
                    v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        ApiError::invalid("after", "must be a non-negative integer")
                    })?
            }
            "limit" => {
                limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid("limit", format!("must be between 1 and {MAX_PAGE}"))
                    })?
            }
            other => return Err(ApiError::invalid(other, "unknown query parameter")),
        }
    }
    Ok((after, limit))
}

/// The feed page as JSON: `{"events": [...], "next_after": N}`.
pub fn feed_json(events: &[Envelope], after: i64) -> serde_json::Value {
    let next_after = events.last().map(|e| e.seq).unwrap_or(after);
    json!({"events": events, "next_after": next_after})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn feed_params_are_validated() {
        assert_eq!(feed_params(&q(&[])).unwrap(), (0, 100));
        assert_eq!(
            feed_params(&q(&[("after", "7"), ("limit", "5")])).unwrap(),
            (7, 5)
        );
        assert!(feed_params(&q(&[("after", "-1")])).is_err());
        assert!(feed_params(&q(&[("limit", "0")])).is_err());
        assert!(feed_params(&q(&[("limit", "x")])).is_err());
        assert!(feed_params(&q(&[("bogus", "1")])).is_err());
    }

    #[test]
    fn next_after_is_the_last_seq_or_the_cursor() {
        assert_eq!(feed_json(&[], 4)["next_after"], 4);
    }
}
