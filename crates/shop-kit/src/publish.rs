//! Publishing a source's outbox on Redis: each consumer's copy of each event on that
//! consumer's stream channel (`shop.<source>.<consumer>.<partition>`), oldest first, under the
//! relay lease (`lease`).

use crate::envelope::BATCH;
use crate::lease::{self, RelayPort};
use crate::outbox::Row;
use crate::sql::Db;
use crate::stream::channel;

/// Publishes each pair of arguments (channel, message) in order, and stops at the first
/// message no subscriber received; returns how many were received. One round trip for a page of events: Spin's Redis interface publishes one message
/// per call and has no pipelining. Pub/sub forgets a message nobody was subscribed to hear (a
/// consumer restarting, Redis just back): counting the receivers is how the relay knows.
const PUBLISH_ALL: &str = "local n = 0 \
    for i = 1, #ARGV, 2 do \
      if redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) < 1 then return n end \
      n = n + 1 \
    end return n";

/// Publishes every unsent event of `source` and records as sent those whose copies each
/// reached a subscription of their consumer, unless another relay holds the lease and so sends
/// them. With `Look::Own`, only an instance that claimed the lease when it wrote its events
/// relays (nothing to read or write otherwise); with `Look::All`, unsent events are looked for
/// first. What is not recorded stays for the next publish or sweep (an error says so).
pub fn to_redis(db: &Db, source: &str, redis_address: &str, look: Look) -> anyhow::Result<usize> {
    let port = lease::sql::Outbox { db, source };
    let holder = match (crate::claim::take(), look) {
        (Some(claimed), _) => lease::Holder::Claimed(claimed),
        (None, Look::Own) => return Ok(0),
        // A read first, so that relays with nothing to send, and relays that leave their
        // events to the lease's holder, take no write lock.
        (None, Look::All) if !port.needed(crate::time::now_millis())? => return Ok(0),
        (None, Look::All) => lease::Holder::Taking(uuid::Uuid::new_v4().to_string()),
    };
    let conn = match spin_sdk::redis::Connection::open(redis_address) {
        Ok(conn) => conn,
        Err(e) => {
            if let lease::Holder::Claimed(claim) = &holder {
                // Left for the retry, which looks for them, or the sweep.
                let _ = port.release(&claim.holder);
            }
            anyhow::bail!("redis {redis_address}: {e:?}");
        }
    };
    let keys = crate::config::internal_keys();
    lease::relay(&port, holder, crate::time::now_millis, |page| {
        publish_all(&conn, keys.as_ref(), page)
    })
}

/// Which events a publish looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Those this instance wrote, when it claimed the lease for them.
    Own,
    /// Any unsent event, whoever wrote it.
    All,
}

/// One message of a page: the copies of one consumer stream, in order.
#[derive(Debug, PartialEq)]
struct Message {
    channel: String,
    /// Indexes into the page of the rows it carries; the first is the lowest.
    rows: Vec<usize>,
}

/// The messages that carry the copies of `rows`: each stream's copies in order, at most
/// [`BATCH`] a message, the messages ordered by their first row. Rows without a consumer are
/// in none.
fn messages(rows: &[Row]) -> Vec<Message> {
    let mut messages: Vec<Message> = Vec::new();
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (n, env) in rows.iter().map(|r| &r.env).enumerate() {
        if env.consumer.is_empty() {
            continue;
        }
        let channel = channel(&env.source, &env.consumer, env.partition);
        match open.get(&channel) {
            Some(&m) if messages[m].rows.len() < BATCH => messages[m].rows.push(n),
            _ => {
                open.insert(channel.clone(), messages.len());
                messages.push(Message {
                    channel,
                    rows: vec![n],
                });
            }
        }
    }
    messages
}

/// How many of `rows`, in order, are done when the first `received` of `messages` were
/// received: every row before the first row of the first message not received (a row without
/// a consumer sends nothing and is done once everything before it is).
fn done_rows(rows: &[Row], messages: &[Message], received: usize) -> usize {
    messages.get(received).map_or(rows.len(), |m| m.rows[0])
}

/// Publishes the copies in `rows` on their consumers' channels, signed with `keys`, in
/// [`messages`], in one round trip (`PUBLISH_ALL`); returns how many of `rows` are done.
fn publish_all(
    conn: &spin_sdk::redis::Connection,
    keys: Option<&crate::seal::Keys>,
    rows: &[Row],
) -> anyhow::Result<usize> {
    use spin_sdk::redis::{RedisParameter as P, RedisResult as R};
    let messages = messages(rows);
    if messages.is_empty() {
        return Ok(rows.len());
    }
    let mut args = vec![P::Binary(PUBLISH_ALL.as_bytes().to_vec()), P::Int64(0)];
    for message in &messages {
        let signed: Vec<crate::Envelope> = message
            .rows
            .iter()
            .map(|&n| {
                let mut env = rows[n].env.clone();
                if let Some(keys) = keys {
                    keys.sign(&mut env);
                }
                env
            })
            .collect();
        let body = match signed.as_slice() {
            [one] => serde_json::to_vec(one)?,
            batch => serde_json::to_vec(batch)?,
        };
        args.push(P::Binary(message.channel.clone().into_bytes()));
        args.push(P::Binary(body));
    }
    let reply = conn
        .execute("EVAL", &args)
        .map_err(|e| anyhow::anyhow!("publish: {e:?}"))?;
    let received = match reply.first() {
        Some(R::Int64(n)) => (*n).max(0) as usize,
        other => anyhow::bail!("publish: unexpected reply {other:?}"),
    };
    Ok(done_rows(rows, &messages, received))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(consumers: &[&str]) -> Vec<Row> {
        consumers
            .iter()
            .enumerate()
            .map(|(n, c)| Row {
                position: n as i64,
                env: crate::Envelope {
                    consumer: c.to_string(),
                    ..crate::testing::envelope(1)
                },
            })
            .collect()
    }

    fn done(page: &[Row], received: usize) -> usize {
        done_rows(page, &messages(page), received)
    }

    #[test]
    fn rows_without_a_consumer_count_as_sent_in_their_place() {
        let page = rows(&["a", "", "b", "", "c"]);
        assert_eq!(done(&page, 0), 0);
        assert_eq!(done(&page, 1), 2);
        assert_eq!(done(&page, 2), 4);
        assert_eq!(done(&page, 3), 5);
        assert_eq!(done(&rows(&["", ""]), 0), 2);
    }

    #[test]
    fn a_streams_copies_share_a_message_in_their_order() {
        let page = rows(&["a", "b", "a", "", "c", "b", "a"]);
        let sent = messages(&page);
        let carried: Vec<&[usize]> = sent.iter().map(|m| m.rows.as_slice()).collect();
        assert_eq!(carried, [&[0, 2, 6][..], &[1, 5], &[4]]);
        assert_eq!(sent[0].channel, channel("orders", "a", 0));
        // A stream's message not received holds back every row from its first one on, even
        // those of later streams that were received: they go again, and are dropped as
        // duplicates.
        assert_eq!(done(&page, 0), 0);
        assert_eq!(done(&page, 1), 1);
        assert_eq!(done(&page, 2), 4);
        assert_eq!(done(&page, 3), 7);
    }

    #[test]
    fn a_long_backlog_of_one_stream_goes_in_batches() {
        let page = rows(&vec!["a"; 2 * BATCH + 1]);
        let sizes: Vec<usize> = messages(&page).iter().map(|m| m.rows.len()).collect();
        assert_eq!(sizes, [BATCH, BATCH, 1]);
        assert_eq!(done(&page, 1), BATCH);
        assert_eq!(done(&page, 3), 2 * BATCH + 1);
    }
}
