//! Publishing a source's outbox on Redis: each event on its stream's channel
//! (`shop.<source>.<partition>`), oldest first, under the relay lease (`lease`).

use crate::lease;
use crate::outbox::Row;
use crate::sql::Db;
use crate::stream::channel;

/// Publishes each pair of arguments after the first (channel, message) in order, and stops at
/// the first message that fewer than `ARGV[1]` subscribers received; returns how many reached
/// them all. One round trip for a page of events: Spin's Redis interface publishes one message
/// per call and has no pipelining. Pub/sub forgets a message nobody was subscribed to hear (a
/// consumer restarting, Redis just back): counting the receivers is how the relay knows.
const PUBLISH_ALL: &str = "local n = 0 \
    for i = 2, #ARGV, 2 do \
      if redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) < tonumber(ARGV[1]) then return n end \
      n = n + 1 \
    end return n";

/// Publishes every unpublished event of `source` and marks published those that reached a
/// subscription of each of its consumers, unless another relay holds the lease and so sends
/// them. What is not marked stays for the next publish or sweep (an error says so).
pub fn to_redis(db: &Db, source: &str, redis_address: &str) -> anyhow::Result<usize> {
    let port = lease::sql::Outbox { db, source };
    // Reads first, so that handlers with nothing to send, and relays that leave their events
    // to the lease's holder, take no write lock.
    if !lease::needed(&port, crate::time::now_millis())? {
        return Ok(0);
    }
    // Connected before the lease is taken, so the lease covers only the publishing.
    let conn = spin_sdk::redis::Connection::open(redis_address)
        .map_err(|e| anyhow::anyhow!("redis {redis_address}: {e:?}"))?;
    let holder = uuid::Uuid::new_v4().to_string();
    let consumers = crate::subscriptions::subscribers(source).count() as i64;
    let keys = crate::config::internal_keys();
    lease::relay(&port, &holder, crate::time::now_millis, |page| {
        publish_all(&conn, consumers, keys.as_ref(), page)
    })
}

/// Publishes `rows` on their channels, signed with `keys`, in order, in one round trip
/// (`PUBLISH_ALL`); returns how many reached at least `consumers` subscribers.
fn publish_all(
    conn: &spin_sdk::redis::Connection,
    consumers: i64,
    keys: Option<&crate::seal::Keys>,
    rows: &[Row],
) -> anyhow::Result<usize> {
    use spin_sdk::redis::{RedisParameter as P, RedisResult as R};
    let mut args = vec![
        P::Binary(PUBLISH_ALL.as_bytes().to_vec()),
        P::Int64(0),
        P::Int64(consumers),
    ];
    for row in rows {
        let mut env = row.env.clone();
        if let Some(keys) = keys {
            keys.sign(&mut env);
        }
        args.push(P::Binary(channel(&env.source, env.partition).into_bytes()));
        args.push(P::Binary(serde_json::to_vec(&env)?));
    }
    let reply = conn
        .execute("EVAL", &args)
        .map_err(|e| anyhow::anyhow!("publish: {e:?}"))?;
    match reply.first() {
        Some(R::Int64(n)) => Ok((*n).max(0) as usize),
        other => anyhow::bail!("publish: unexpected reply {other:?}"),
    }
}
