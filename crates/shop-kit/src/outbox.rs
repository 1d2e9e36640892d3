//! Transactional outbox: an event is written in the same transaction as the state change
//! that causes it (table `outbox`, `seq INTEGER PRIMARY KEY` so it is gap-free per source),
//! handed to its consumers after commit (`relay`), and served as the source's feed.

use serde_json::json;
use shop_events::ShopEvent;

use crate::envelope::channel;
use crate::sqlite::{i, int, t, text, Db};
use crate::{lease, ApiError, Envelope};

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

/// Publishes each of its arguments after the first (the channel) on that channel, in order:
/// one round trip for a page of events. Spin's Redis interface publishes one message per call
/// and has no pipelining; a script call is how a page goes in one.
const PUBLISH_ALL: &str =
    "for i = 2, #ARGV do redis.call('PUBLISH', ARGV[1], ARGV[i]) end return #ARGV - 1";

/// Publishes every unpublished event on `shop.<source>`, oldest first, and marks them
/// published, unless another relay holds the lease and so sends them (see `lease`). On
/// failure nothing is marked: the events stay for the next publish or sweep.
pub fn publish_to_redis(db: &Db, source: &str, redis_address: &str) -> anyhow::Result<usize> {
    let port = lease::sql::Outbox { db, source };
    // Reads first, so that handlers with nothing to send, and relays that leave their events
    // to the lease's holder, take no write lock.
    if !lease::needed(&port, crate::time::now_millis())? {
        return Ok(0);
    }
    // Connected before the lease is taken, so the lease covers only the publishing.
    let conn = spin_sdk::redis::Connection::open(redis_address)
        .map_err(|e| anyhow::anyhow!("redis {redis_address}: {e:?}"))?;
    let chan = channel(source);
    let holder = uuid::Uuid::new_v4().to_string();
    lease::relay(&port, &holder, crate::time::now_millis, |page| {
        publish_all(&conn, &chan, page)
    })
}

/// Publishes `events` on `chan`, in order, in one round trip (`PUBLISH_ALL`).
fn publish_all(
    conn: &spin_sdk::redis::Connection,
    chan: &str,
    events: &[Envelope],
) -> anyhow::Result<()> {
    use spin_sdk::redis::RedisParameter as P;
    let mut args = vec![
        P::Binary(PUBLISH_ALL.as_bytes().to_vec()),
        P::Int64(0),
        P::Binary(chan.as_bytes().to_vec()),
    ];
    for env in events {
        args.push(P::Binary(serde_json::to_vec(env)?));
    }
    conn.execute("EVAL", &args)
        .map_err(|e| anyhow::anyhow!("publish to {chan}: {e:?}"))?;
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
