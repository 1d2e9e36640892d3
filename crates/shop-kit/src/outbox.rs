//! Transactional outbox: an event is written in the same transaction as the state change
//! that causes it, handed to its consumers after commit (`publish`, `push`), and served as the
//! source's feed.
//!
//! Table `outbox`: `seq INTEGER PRIMARY KEY` is the row's position in the whole outbox (the
//! cursor of the whole-outbox feed, and of the relay), `partition` its order's partition.
//! Table `outbox_streams` numbers the event in the stream of each consumer that takes its type
//! (`subscriptions::takers`): `(consumer, partition, pseq)`, `pseq` being gap-free per stream
//! because it is assigned inside the writing transaction. The copy sent to a consumer carries
//! that consumer's `pseq` as its `seq`. Table `outbox_relay`, one row, holds the relay's lease
//! and `sent_through`, the position up to which every event reached its consumers: positions
//! are assigned in commit order (writers serialize), so the unsent events are those after it.

use serde_json::json;
use shop_events::ShopEvent;

use crate::claim::Claim;
pub use crate::envelope::Row;
use crate::sql::{i, int, t, text, Db, Value};
use crate::stream::{partition_of, PARTITIONS};
use crate::{ApiError, Envelope};

/// Largest page the feed serves.
pub const MAX_PAGE: i64 = 500;

/// How long a relay lease lasts without being renewed: the longest a killed holder delays
/// events.
pub const LEASE_TTL_MS: i64 = 2_000;

/// Takes the relay lease for `?1` if it is free (released, or expired at `?2`, now) until `?3`;
/// returns a row, the cursor `sent_through`, only when taken. One statement: on its own, one
/// short implicit transaction.
pub const TAKE_LEASE: &str = "UPDATE outbox_relay SET holder = ?1, expires_at = ?3 \
    WHERE id = 1 AND expires_at <= ?2 RETURNING sent_through";

/// Appends `event` to the outbox of `source` and to the stream of each consumer that takes it,
/// and claims the relay lease for this instance when it is free (`claim`); call inside the
/// transaction of the state change. When the lease is held, its holder sends the event: the
/// holder releases it only in a write that finds nothing unsent, which comes after this
/// transaction's commit (`lease`).
pub fn append(db: &Db, source: &str, event: &ShopEvent, traceparent: &str) -> anyhow::Result<()> {
    let partition = partition_of(event.order_id());
    let id = uuid::Uuid::new_v4().to_string();
    let occurred_at = crate::time::now_rfc3339();
    let data = event.data();
    let inserted = db.exec(
        "INSERT INTO outbox (id, type, occurred_at, traceparent, data, partition) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
        &[
            t(&id),
            t(event.type_name()),
            t(&occurred_at),
            t(traceparent),
            t(data.to_string()),
            i(partition),
        ],
    )?;
    let position = inserted
        .rows
        .first()
        .map(|r| int(r, 0))
        .ok_or_else(|| anyhow::anyhow!("the outbox insert returned no position"))?;
    let copy = |consumer: &str, seq: i64| Row {
        position,
        env: Envelope {
            id: id.clone(),
            type_name: event.type_name().to_string(),
            source: source.to_string(),
            consumer: consumer.to_string(),
            partition,
            seq,
            occurred_at: occurred_at.clone(),
            traceparent: traceparent.to_string(),
            data: data.clone(),
            mac: String::new(),
        },
    };
    let mut numbered = Vec::new();
    for consumer in crate::subscriptions::takers(source, event.type_name()) {
        let rows = db.exec(STREAM_APPEND, &[t(consumer), i(partition), i(position)])?;
        numbered.push((consumer, rows.rows.first().map(|r| int(r, 0)).unwrap_or(0)));
    }
    // In the order `unpublished` reads them back: by consumer; an event nobody takes, alone.
    numbered.sort_unstable();
    if numbered.is_empty() {
        numbered.push(("", 0));
    }
    // Built only for a claim that keeps them.
    let copies = || numbered.iter().map(|&(c, seq)| copy(c, seq)).collect();
    match crate::claim::held() {
        Some(mut claim) if claim.unsent.is_some() => {
            claim.add(copies());
            crate::claim::set(Some(claim));
        }
        Some(_) => {}
        None => {
            let holder = uuid::Uuid::new_v4().to_string();
            let now = crate::time::now_millis();
            let taken = db.exec(TAKE_LEASE, &[t(&holder), i(now), i(now + LEASE_TTL_MS)])?;
            if let Some(row) = taken.rows.first() {
                crate::claim::set(Some(Claim::new(holder, int(row, 0), copies())));
            }
        }
    }
    Ok(())
}

/// Numbers the event at outbox position `?3` next in stream (consumer `?1`, partition `?2`);
/// returns that number.
pub const STREAM_APPEND: &str = "INSERT INTO outbox_streams (consumer, partition, pseq, position) \
    VALUES (?1, ?2, (SELECT coalesce(max(pseq), 0) + 1 FROM outbox_streams \
      WHERE consumer = ?1 AND partition = ?2), ?3) RETURNING pseq";

/// Columns every query below selects, in this order: position, partition, seq, consumer, then
/// the event.
const EVENT: &str = "o.id, o.type, o.occurred_at, o.traceparent, o.data";

fn rows(db: &Db, source: &str, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>> {
    db.exec(sql, params)?
        .rows
        .iter()
        .map(|row| {
            Ok(Row {
                position: int(row, 0),
                env: Envelope {
                    partition: int(row, 1),
                    seq: int(row, 2),
                    consumer: text(row, 3),
                    id: text(row, 4),
                    type_name: text(row, 5),
                    source: source.to_string(),
                    occurred_at: text(row, 6),
                    traceparent: text(row, 7),
                    data: serde_json::from_str(&text(row, 8))?,
                    mac: String::new(),
                },
            })
        })
        .collect()
}

/// Which events a feed page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedQuery {
    /// Only the copies sent to this consumer; `None`: the events themselves.
    pub consumer: Option<String>,
    /// Only this partition's events.
    pub partition: Option<i64>,
    /// The cursor: a `pseq` in one consumer's stream (both filters given), else an outbox
    /// position.
    pub after: i64,
    pub limit: i64,
}

impl FeedQuery {
    /// Whether the page is one consumer's stream, in `pseq` order.
    fn stream(&self) -> Option<(&str, i64)> {
        Some((self.consumer.as_deref()?, self.partition?))
    }
}

/// A feed page, oldest first: one consumer's stream in `pseq` order, or (any other filter)
/// events or their copies in outbox order.
pub fn page(db: &Db, source: &str, q: &FeedQuery) -> anyhow::Result<Vec<Row>> {
    // The column the cursor and the order follow: the stream's seq, or the outbox position.
    let cursor = if q.stream().is_some() {
        "s.pseq"
    } else {
        "o.seq"
    };
    // A consumer's copies are read through `outbox_streams`' key (consumer, partition, pseq).
    let (seq_and_consumer, from, partition, mut filter, mut params) = match &q.consumer {
        Some(consumer) => (
            "s.pseq, s.consumer",
            "outbox_streams s JOIN outbox o ON o.seq = s.position",
            "s.partition",
            format!("s.consumer = ? AND {cursor} > ?"),
            vec![t(consumer), i(q.after)],
        ),
        None => (
            "o.seq, ''",
            "outbox o",
            "o.partition",
            "o.seq > ?".to_string(),
            vec![i(q.after)],
        ),
    };
    if let Some(p) = q.partition {
        filter.push_str(&format!(" AND {partition} = ?"));
        params.push(i(p));
    }
    params.push(i(q.limit));
    let sql = format!(
        "SELECT o.seq, o.partition, {seq_and_consumer}, {EVENT} FROM {from} \
         WHERE {filter} ORDER BY {cursor} LIMIT ?"
    );
    rows(db, source, &sql, &params)
}

/// The consumers' copies of the first `limit` unpublished events, oldest first; an event no
/// consumer takes appears once, with no consumer (it needs no sending).
pub fn unpublished(db: &Db, source: &str, limit: i64) -> anyhow::Result<Vec<Row>> {
    rows(
        db,
        source,
        &format!(
            "SELECT o.seq, o.partition, coalesce(s.pseq, 0), coalesce(s.consumer, ''), {EVENT} \
             FROM outbox o LEFT JOIN outbox_streams s ON s.position = o.seq \
             WHERE o.seq IN (SELECT seq FROM outbox WHERE seq > {UNSENT_AFTER} ORDER BY seq LIMIT ?) \
             ORDER BY o.seq, s.consumer"
        ),
        &[i(limit)],
    )
}

/// The position after which events are unsent (a subquery).
const UNSENT_AFTER: &str = "(SELECT sent_through FROM outbox_relay WHERE id = 1)";

/// The outbox position up to which every event is sent, when the first `sent` of `copies`
/// (oldest first, as `unpublished` lists them) reached their consumers: an event counts only
/// when all its copies did.
pub fn sent_through(copies: &[Row], sent: usize) -> Option<i64> {
    let sent = sent.min(copies.len());
    let cut = copies.get(sent).map(|next| next.position);
    copies[..sent]
        .iter()
        .rev()
        .map(|r| r.position)
        .find(|p| Some(*p) != cut)
}

/// Moves `sent_through` up to `?1`, never back.
pub const SENT_THROUGH: &str = "CASE WHEN sent_through < ?1 THEN ?1 ELSE sent_through END";

/// Records every event up to outbox position `position` as sent.
pub fn mark_published(db: &Db, position: i64) -> anyhow::Result<()> {
    db.exec(
        &format!("UPDATE outbox_relay SET sent_through = {SENT_THROUGH} WHERE id = 1"),
        &[i(position)],
    )?;
    Ok(())
}

/// Parses `consumer`, `partition`, `after` and `limit` of `GET /<source>/events`: a consumer's
/// stream takes both of the first two; either alone filters the outbox.
pub fn feed_params(query: &[(String, String)], source: &str) -> Result<FeedQuery, ApiError> {
    let (mut consumer, mut partition) = (None, None);
    let (mut after, mut limit) = (0, 100);
    for (k, v) in query {
        match k.as_str() {
            "consumer" => {
                let known = crate::subscriptions::subscribers(source).find(|c| c == v);
                consumer = Some(known.ok_or_else(|| {
                    let all: Vec<_> = crate::subscriptions::subscribers(source).collect();
                    ApiError::invalid("consumer", format!("must be one of {}", all.join(", ")))
                })?);
            }
            "partition" => {
                partition = Some(
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
    Ok(FeedQuery {
        consumer: consumer.map(str::to_string),
        partition,
        after,
        limit,
    })
}

/// The feed page as JSON: `{"events": [...], "next_after": N}`, `next_after` being the cursor
/// of the next page (the last event's `seq` in a consumer's stream, its outbox position
/// otherwise).
pub fn feed_json(rows: &[Row], q: &FeedQuery) -> serde_json::Value {
    let next_after = rows.last().map_or(q.after, |r| match q.stream() {
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
            consumer: None,
            partition: None,
            after: 0,
            limit: 100,
        };
        assert_eq!(feed_params(&q(&[]), "orders").unwrap(), all);
        let pairs = [
            ("after", "7"),
            ("limit", "5"),
            ("partition", "3"),
            ("consumer", "billing"),
        ];
        assert_eq!(
            feed_params(&q(&pairs), "orders").unwrap(),
            FeedQuery {
                consumer: Some("billing".into()),
                partition: Some(3),
                after: 7,
                limit: 5
            }
        );
        // Either filter alone is a filter of the outbox.
        let alone = feed_params(&q(&[("consumer", "inventory")]), "orders").unwrap();
        assert_eq!(
            (alone.consumer.as_deref(), alone.partition),
            (Some("inventory"), None)
        );
        assert!(alone.stream().is_none());
        for (bad, field) in [
            (&[("after", "-1")][..], "after"),
            (&[("limit", "0")], "limit"),
            (&[("limit", "x")], "limit"),
            (&[("bogus", "1")], "bogus"),
            (&[("partition", "4")], "partition"),
            (&[("partition", "-1")], "partition"),
            // orders is not a consumer of its own events.
            (&[("consumer", "orders"), ("partition", "0")], "consumer"),
            (&[("consumer", "")], "consumer"),
        ] {
            let err = feed_params(&q(bad), "orders").unwrap_err();
            assert!(err.message.starts_with(field), "{bad:?}: {}", err.message);
        }
    }

    #[test]
    fn next_after_follows_the_stream_or_the_outbox() {
        let q = |consumer: Option<&str>, partition| FeedQuery {
            consumer: consumer.map(str::to_string),
            partition,
            after: 4,
            limit: 10,
        };
        assert_eq!(feed_json(&[], &q(None, None))["next_after"], 4);
        let rows = [Row {
            position: 40,
            env: crate::testing::envelope(9),
        }];
        assert_eq!(
            feed_json(&rows, &q(Some("inventory"), Some(0)))["next_after"],
            9
        );
        assert_eq!(
            feed_json(&rows, &q(Some("inventory"), None))["next_after"],
            40
        );
        assert_eq!(feed_json(&rows, &q(None, Some(0)))["next_after"], 40);
    }

    #[test]
    fn an_event_is_sent_when_all_its_copies_are() {
        let copies: Vec<Row> = [5, 5, 6, 7, 7, 7]
            .iter()
            .map(|&position| Row {
                position,
                env: crate::testing::envelope(1),
            })
            .collect();
        assert_eq!(sent_through(&copies, 0), None);
        assert_eq!(sent_through(&copies, 1), None);
        assert_eq!(sent_through(&copies, 2), Some(5));
        assert_eq!(sent_through(&copies, 3), Some(6));
        assert_eq!(sent_through(&copies, 5), Some(6));
        assert_eq!(sent_through(&copies, 6), Some(7));
        assert_eq!(sent_through(&copies, 9), Some(7));
    }
}
