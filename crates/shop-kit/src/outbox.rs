//! Transactional outbox: an event is written in the same transaction as the state change
//! that causes it, handed to its consumers after commit (`publish`, `push`), and served as the
//! source's feed.
//!
//! Table `outbox`: `seq INTEGER PRIMARY KEY` is the row's position in the whole outbox (what
//! the relay marks published, and the cursor of the unpartitioned feed); `partition` and
//! `pseq` place the event in its stream, `pseq` being gap-free per partition because it is
//! assigned inside the writing transaction. The envelope's `seq` is `pseq`.

use serde_json::json;
use shop_events::ShopEvent;

use crate::sql::{i, int, t, text, Db};
use crate::stream::{partition_of, PARTITIONS};
use crate::{ApiError, Envelope};

/// Largest page the feed serves.
pub const MAX_PAGE: i64 = 500;

/// Appends `event` to its order's stream; call inside the transaction of the state change.
pub fn append(db: &Db, event: &ShopEvent, traceparent: &str) -> anyhow::Result<()> {
    db.exec(
        "INSERT INTO outbox (id, type, occurred_at, traceparent, data, partition, pseq) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
           (SELECT coalesce(max(pseq), 0) + 1 FROM outbox WHERE partition = ?6))",
        &[
            t(uuid::Uuid::new_v4().to_string()),
            t(event.type_name()),
            t(crate::time::now_rfc3339()),
            t(traceparent),
            t(event.data().to_string()),
            i(partition_of(event.order_id())),
        ],
    )?;
    Ok(())
}

/// One outbox row: where it stands in the whole outbox, and the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub position: i64,
    pub env: Envelope,
}

const COLUMNS: &str = "seq, partition, pseq, id, type, occurred_at, traceparent, data";

fn rows(
    db: &Db,
    source: &str,
    sql: &str,
    params: &[crate::sql::Value],
) -> anyhow::Result<Vec<Row>> {
    db.exec(sql, params)?
        .rows
        .iter()
        .map(|row| {
            Ok(Row {
                position: int(row, 0),
                env: Envelope {
                    partition: int(row, 1),
                    seq: int(row, 2),
                    id: text(row, 3),
                    type_name: text(row, 4),
                    source: source.to_string(),
                    occurred_at: text(row, 5),
                    traceparent: text(row, 6),
                    data: serde_json::from_str(&text(row, 7))?,
                    mac: String::new(),
                },
            })
        })
        .collect()
}

/// Which events a feed page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedQuery {
    /// One stream, its events after `pseq` `after`; `None`: every event after outbox
    /// position `after`.
    pub partition: Option<i64>,
    pub after: i64,
    pub limit: i64,
}

/// A feed page, oldest first.
pub fn page(db: &Db, source: &str, q: FeedQuery) -> anyhow::Result<Vec<Row>> {
    match q.partition {
        Some(p) => rows(
            db,
            source,
            &format!(
                "SELECT {COLUMNS} FROM outbox WHERE partition = ? AND pseq > ? \
                 ORDER BY pseq LIMIT ?"
            ),
            &[i(p), i(q.after), i(q.limit)],
        ),
        None => rows(
            db,
            source,
            &format!("SELECT {COLUMNS} FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"),
            &[i(q.after), i(q.limit)],
        ),
    }
}

/// Up to `limit` unpublished events, oldest first.
pub fn unpublished(db: &Db, source: &str, limit: i64) -> anyhow::Result<Vec<Row>> {
    rows(
        db,
        source,
        &format!("SELECT {COLUMNS} FROM outbox WHERE published = 0 ORDER BY seq LIMIT ?"),
        &[i(limit)],
    )
}

/// Marks every event up to outbox position `position` published.
pub fn mark_published(db: &Db, position: i64) -> anyhow::Result<()> {
    db.exec(
        "UPDATE outbox SET published = 1 WHERE published = 0 AND seq <= ?",
        &[i(position)],
    )?;
    Ok(())
}

/// Parses `partition`, `after` and `limit` of `GET /<fn>/events`.
pub fn feed_params(query: &[(String, String)]) -> Result<FeedQuery, ApiError> {
    let mut q = FeedQuery {
        partition: None,
        after: 0,
        limit: 100,
    };
    for (k, v) in query {
        match k.as_str() {
            "partition" => {
                q.partition = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|n| (0..PARTITIONS).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "partition",
                                format!("must be between 0 and {}", PARTITIONS - 1),
                            )
                        })?,
                )
            }
            "after" => {
                q.after =
                    v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        ApiError::invalid("after", "must be a non-negative integer")
                    })?
            }
            "limit" => {
                q.limit = v
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
    Ok(q)
}

/// The feed page as JSON: `{"events": [...], "next_after": N}`, `next_after` being the cursor
/// of the next page (the last event's `seq` for one stream, its outbox position otherwise).
pub fn feed_json(rows: &[Row], q: FeedQuery) -> serde_json::Value {
    let next_after = rows.last().map_or(q.after, |r| match q.partition {
        Some(_) => r.env.seq,
        None => r.position,
    });
    let events: Vec<&Envelope> = rows.iter().map(|r| &r.env).collect();
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
        let all = FeedQuery {
            partition: None,
            after: 0,
            limit: 100,
        };
        assert_eq!(feed_params(&q(&[])).unwrap(), all);
        assert_eq!(
            feed_params(&q(&[("after", "7"), ("limit", "5"), ("partition", "3")])).unwrap(),
            FeedQuery {
                partition: Some(3),
                after: 7,
                limit: 5
            }
        );
        for bad in [
            ("after", "-1"),
            ("limit", "0"),
            ("limit", "x"),
            ("bogus", "1"),
            ("partition", "4"),
            ("partition", "-1"),
        ] {
            let err = feed_params(&q(&[bad])).unwrap_err();
            assert!(err.message.starts_with(bad.0), "{bad:?}: {}", err.message);
        }
    }

    #[test]
    fn next_after_follows_the_stream_or_the_outbox() {
        let q = |partition| FeedQuery {
            partition,
            after: 4,
            limit: 10,
        };
        assert_eq!(feed_json(&[], q(None))["next_after"], 4);
        let row = Row {
            position: 40,
            env: Envelope {
                partition: 1,
                ..crate::testing::envelope(9)
            },
        };
        let rows = [row];
        assert_eq!(feed_json(&rows, q(Some(1)))["next_after"], 9);
        assert_eq!(feed_json(&rows, q(None))["next_after"], 40);
    }
}
