//! Publishing a source's outbox on Redis: each consumer's copy of each event on that
//! consumer's stream channel (`shop.<source>.<consumer>.<partition>`), oldest first, under the
//! relay lease (`lease`).

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

/// Publishes the copies in `rows` on their consumers' channels, signed with `keys`, in order,
/// in one round trip (`PUBLISH_ALL`); returns how many of `rows` are done: received, or an
/// event no consumer takes (nothing to send).
fn publish_all(
    conn: &spin_sdk::redis::Connection,
    keys: Option<&crate::seal::Keys>,
    rows: &[Row],
) -> anyhow::Result<usize> {
    use spin_sdk::redis::{RedisParameter as P, RedisResult as R};
    let mut args = vec![P::Binary(PUBLISH_ALL.as_bytes().to_vec()), P::Int64(0)];
    for env in rows
        .iter()
        .map(|r| &r.env)
        .filter(|e| !e.consumer.is_empty())
    {
        let mut env = env.clone();
        if let Some(keys) = keys {
            keys.sign(&mut env);
        }
        args.push(P::Binary(
            channel(&env.source, &env.consumer, env.partition).into_bytes(),
        ));
        args.push(P::Binary(serde_json::to_vec(&env)?));
    }
    let received = if args.len() > 2 {
        let reply = conn
            .execute("EVAL", &args)
            .map_err(|e| anyhow::anyhow!("publish: {e:?}"))?;
        match reply.first() {
            Some(R::Int64(n)) => (*n).max(0) as usize,
            other => anyhow::bail!("publish: unexpected reply {other:?}"),
        }
    } else {
        0
    };
    Ok(done_rows(rows, received))
}

/// How many of `rows`, in order, are done when the first `received` of their messages (one per
/// row with a consumer) were received: a row without a consumer sends nothing and is done
/// once everything before it is.
fn done_rows(rows: &[Row], received: usize) -> usize {
    let mut messages = 0;
    rows.iter()
        .take_while(|r| {
            if r.env.consumer.is_empty() {
                return true;
            }
            messages += 1;
            messages <= received
        })
        .count()
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

    #[test]
    fn rows_without_a_consumer_count_as_sent_in_their_place() {
        let page = rows(&["a", "", "b", "", "c"]);
        assert_eq!(done_rows(&page, 0), 0);
        assert_eq!(done_rows(&page, 1), 2);
        assert_eq!(done_rows(&page, 2), 4);
        assert_eq!(done_rows(&page, 3), 5);
        assert_eq!(done_rows(&rows(&["", ""]), 0), 2);
    }
}
