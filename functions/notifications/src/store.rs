//! Key-value adapter of the `NotificationStore` port (store label `notifications`).
//!
//! Keys: `n:<id>` a notification; `customer:<id>...` the customer's notification ids and
//! `undelivered...` the queue of those still to deliver, in pages and per stream (see `index`);
//! `inbox:<source>[:<partition>]` last applied seq per stream;
//! `breaker`. An order's notifications need no index: their ids derive from the order id and
//! the kind.
//! Events that could not be applied: `pending:<event id>` (with its attempts and when it is
//! due) listed in `pending`; parked ones `dead:<event id>` listed in `dead_letters`; the wake's
//! arm in `wake` (see `shop_kit::wake`). Both lists stay short: they hold only events in
//! trouble.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use shop_kit::breaker::Breaker;
use shop_kit::consume::ConsumerStore;
use shop_kit::deadletter::{self, ParkedStore};
use shop_kit::inbox::{position, InboxPort, Outcome, Position};
use shop_kit::pending::{self, Pending, PendingPort};
use shop_kit::redo::{Redo, RedoMark};
use shop_kit::stream::{partition_of, partitions};
use shop_kit::wake::{self, WakePort};
use shop_kit::Envelope;
use spin_sdk::key_value::Store;
use spin_sdk::wit::wasi::keyvalue::{atomics, store as bucket};

use crate::domain::{Kind, Notification};
use crate::index::{self, PageStore};
use crate::service::NotificationStore;

pub struct KvNotifications {
    store: Store,
    /// The pending or parked event this instance retries, if any.
    redo: RedoMark,
}

/// The store's label in `spin.toml`.
const LABEL: &str = "notifications";
/// The list of parked events.
const LETTERS: &str = "dead_letters";
/// The list of pending events.
const PENDING: &str = "pending";
/// The wake's arm.
const WAKE: &str = "wake";

impl KvNotifications {
    pub fn open() -> anyhow::Result<Self> {
        let store = Store::open(LABEL)
            .map_err(|e| anyhow::anyhow!("opening key-value store notifications: {e:?}"))?;
        Ok(Self {
            store,
            redo: RedoMark::default(),
        })
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.store
            .delete(key)
            .map_err(|e| anyhow::anyhow!("deleting {key}: {e:?}"))
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        self.store.get_json(key)
    }

    fn set<T: Serialize>(&self, key: &str, value: &T) -> anyhow::Result<()> {
        self.store.set_json(key, value)
    }

    /// Writes `value` under `key` only while the key is absent, atomically across instances and
    /// replicas (`wasi:keyvalue` compare-and-swap, on the same store as `set`): true when this
    /// call wrote it, false when the key exists or another writer got there first.
    fn create<T: Serialize>(&self, key: &str, value: &T) -> anyhow::Result<bool> {
        let failed = |what: &str, e: &dyn std::fmt::Debug| anyhow::anyhow!("{what} {key}: {e:?}");
        let bucket = bucket::open(LABEL).map_err(|e| failed("opening the bucket for", &e))?;
        let cas = atomics::Cas::new(&bucket, key).map_err(|e| failed("reading", &e))?;
        if cas.current().map_err(|e| failed("reading", &e))?.is_some() {
            return Ok(false);
        }
        match atomics::swap(cas, &serde_json::to_vec(value)?) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(e)) => Err(failed("creating", &e)),
        }
    }

    /// Adds `id` to the list under `key` (or removes it), writing only on change.
    fn index(&self, key: &str, id: &str, present: bool) -> anyhow::Result<()> {
        let mut ids = self.ids(key)?;
        let has = ids.iter().any(|i| i == id);
        if present && !has {
            ids.push(id.to_string());
        } else if !present && has {
            ids.retain(|i| i != id);
        } else {
            return Ok(());
        }
        self.set(key, &ids)
    }

    /// The notifications of `ids` that exist.
    fn load(&self, ids: Vec<String>) -> anyhow::Result<Vec<Notification>> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(n) = NotificationStore::get(self, &id)? {
                out.push(n);
            }
        }
        Ok(out)
    }
}

impl PageStore for KvNotifications {
    fn ids(&self, key: &str) -> anyhow::Result<Vec<String>> {
        Ok(self.get(key)?.unwrap_or_default())
    }

    fn set_ids(&self, key: &str, ids: &[String]) -> anyhow::Result<()> {
        self.set(key, &ids)
    }

    fn count(&self, key: &str) -> anyhow::Result<Option<u64>> {
        self.get(key)
    }

    fn set_count(&self, key: &str, count: u64) -> anyhow::Result<()> {
        self.set(key, &count)
    }
}

impl KvNotifications {
    /// Where stream `source`/`partition` stands. Partition 0 keeps the key of the time before
    /// partitions (`inbox:<source>`), so an existing store needs no migration.
    fn stream_key(source: &str, partition: i64) -> String {
        match partition {
            0 => format!("inbox:{source}"),
            p => format!("inbox:{source}:{p}"),
        }
    }

    fn pending_events(&self) -> anyhow::Result<Vec<Waiting>> {
        let mut out = Vec::new();
        for id in self.ids(PENDING)? {
            if let Some(w) = self.get::<Waiting>(&format!("pending:{id}"))? {
                out.push(w);
            }
        }
        Ok(out)
    }

    fn put_pending(&self, p: &Pending, next_at_ms: i64) -> anyhow::Result<()> {
        let waiting = Waiting {
            env: p.env.clone(),
            attempts: p.attempts,
            error: p.error.clone(),
            next_at: next_at_ms,
        };
        self.set(&format!("pending:{}", p.env.id), &waiting)
    }

    fn letter(&self, id: &str) -> anyhow::Result<Option<Value>> {
        self.get(&format!("dead:{id}"))
    }
}

/// A pending event as stored under `pending:<id>`.
#[derive(Clone, Serialize, Deserialize)]
struct Waiting {
    env: Envelope,
    attempts: i64,
    error: String,
    next_at: i64,
}

impl Waiting {
    fn pending(&self) -> Pending {
        Pending {
            env: self.env.clone(),
            attempts: self.attempts,
            error: self.error.clone(),
        }
    }

    /// The first pending event of its order and source.
    fn is_head(&self, all: &[Waiting]) -> bool {
        !all.iter().any(|o| {
            o.env.source == self.env.source
                && o.env.order_id() == self.env.order_id()
                && (o.env.partition, o.env.seq) < (self.env.partition, self.env.seq)
        })
    }
}

impl InboxPort for KvNotifications {
    fn inbox_position(&self, env: &Envelope) -> anyhow::Result<Position> {
        if let Some(redo) = self.redo.get(&env.id) {
            let waits = match redo {
                Redo::Pending => self.get::<Value>(&format!("pending:{}", env.id))?.is_some(),
                Redo::Parked => self.letter(&env.id)?.is_some(),
            };
            return Ok(if waits {
                Position::Next
            } else {
                Position::Duplicate
            });
        }
        let last = self.last_seq(&env.source, env.partition)?;
        Ok(match position(last, env.seq) {
            Position::Next
                if self
                    .pending_events()?
                    .iter()
                    .any(|w| w.env.source == env.source && w.env.order_id() == env.order_id()) =>
            {
                Position::Behind
            }
            other => other,
        })
    }

    /// Never moves a stream back; a retried event is removed from where it waited once its
    /// effect is done.
    fn inbox_record(&self, env: &Envelope) -> anyhow::Result<()> {
        match self.redo.get(&env.id) {
            Some(Redo::Pending) => {
                self.delete(&format!("pending:{}", env.id))?;
                self.index(PENDING, &env.id, false)
            }
            Some(Redo::Parked) => {
                self.delete(&format!("dead:{}", env.id))?;
                self.index(LETTERS, &env.id, false)
            }
            None => {
                if env.seq > self.last_seq(&env.source, env.partition)? {
                    self.set(&Self::stream_key(&env.source, env.partition), &env.seq)?;
                }
                Ok(())
            }
        }
    }
}

impl ConsumerStore for KvNotifications {
    fn last_seq(&self, source: &str, partition: i64) -> anyhow::Result<i64> {
        Ok(self.get(&Self::stream_key(source, partition))?.unwrap_or(0))
    }

    fn pending(&self) -> Option<&dyn PendingPort> {
        Some(self)
    }

    fn wake(&self) -> Option<&dyn WakePort> {
        Some(self)
    }
}

/// Without transactions each step writes before the next one reads it: an event is stored
/// and listed before its stream moves past it, and a letter before its pending entry goes, so
/// a crash in between repeats a step rather than losing the event.
impl PendingPort for KvNotifications {
    fn after(&self) -> i64 {
        pending::after_from_variables()
    }

    fn defer(&self, p: &Pending, next_at_ms: i64) -> anyhow::Result<Outcome> {
        match self.inbox_position(&p.env)? {
            Position::Next | Position::Behind => {
                self.put_pending(p, next_at_ms)?;
                self.index(PENDING, &p.env.id, true)?;
                self.inbox_record(&p.env)?;
                Ok(Outcome::Deferred)
            }
            other => Ok(other.into()),
        }
    }

    fn due(&self, now_ms: i64, limit: i64) -> anyhow::Result<Vec<Pending>> {
        let all = self.pending_events()?;
        let mut due: Vec<&Waiting> = all
            .iter()
            .filter(|w| w.next_at <= now_ms && w.is_head(&all))
            .collect();
        due.sort_by_key(|w| (w.next_at, w.env.partition, w.env.seq));
        Ok(due
            .into_iter()
            .take(limit.max(0) as usize)
            .map(Waiting::pending)
            .collect())
    }

    fn next_due_at(&self) -> anyhow::Result<Option<i64>> {
        let all = self.pending_events()?;
        Ok(all
            .iter()
            .filter(|w| w.is_head(&all))
            .map(|w| w.next_at)
            .min())
    }

    fn reschedule(&self, p: &Pending, next_at_ms: i64) -> anyhow::Result<()> {
        self.put_pending(p, next_at_ms)
    }

    fn park(&self, p: &Pending, also: &dyn Fn() -> anyhow::Result<()>) -> anyhow::Result<()> {
        let id = &p.env.id;
        if self.get::<Value>(&format!("pending:{id}"))?.is_none() {
            return Ok(()); // applied or parked meanwhile by another instance
        }
        let now = shop_kit::time::now_rfc3339();
        let letter = deadletter::letter_json(&p.env, &p.error, p.attempts, &now);
        self.set(&format!("dead:{id}"), &letter)?;
        self.index(LETTERS, id, true)?;
        self.delete(&format!("pending:{id}"))?;
        self.index(PENDING, id, false)?;
        also()
    }

    fn redo(&self, event: Option<(&str, Redo)>) {
        self.redo.set(event);
    }
}

/// The wake's arm under `wake`. The key-value store has no compare-and-set, so two deferrals
/// at the same moment may both arm; each loop checks its arm on every round, so the one
/// overwritten stops at its next round.
impl WakePort for KvNotifications {
    fn arm(&self, now_ms: i64) -> anyhow::Result<Option<String>> {
        if self
            .get::<Arm>(WAKE)?
            .is_some_and(|held| held.until_ms > now_ms)
        {
            return Ok(None);
        }
        let arm = wake::new_arm();
        self.set(
            WAKE,
            &Arm {
                arm: arm.clone(),
                until_ms: now_ms + wake::HOLD_MS,
            },
        )?;
        Ok(Some(arm))
    }

    fn hold(&self, arm: &str, now_ms: i64) -> anyhow::Result<bool> {
        if self.get::<Arm>(WAKE)?.is_none_or(|held| held.arm != arm) {
            return Ok(false);
        }
        self.set(
            WAKE,
            &Arm {
                arm: arm.to_string(),
                until_ms: now_ms + wake::HOLD_MS,
            },
        )?;
        Ok(true)
    }

    fn disarm(&self, arm: &str) -> anyhow::Result<bool> {
        if !self.ids(PENDING)?.is_empty() {
            return Ok(false);
        }
        if self.get::<Arm>(WAKE)?.is_some_and(|held| held.arm == arm) {
            self.delete(WAKE)?;
        }
        Ok(true)
    }
}

#[derive(Serialize, Deserialize)]
struct Arm {
    arm: String,
    until_ms: i64,
}

impl ParkedStore for KvNotifications {
    fn parked(&self) -> anyhow::Result<Vec<Value>> {
        let mut letters = Vec::new();
        for id in self.ids(LETTERS)? {
            if let Some(letter) = self.letter(&id)? {
                letters.push(letter);
            }
        }
        letters.sort_by_key(|l| (l["parked_at"].to_string(), l["seq"].as_i64()));
        Ok(letters)
    }

    fn parked_event(&self, id: &str) -> anyhow::Result<Option<Envelope>> {
        self.letter(id)?
            .map(|letter| serde_json::from_value(letter["payload"].clone()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("dead letter {id} is unreadable: {e}"))
    }

    fn set_redo(&self, event: Option<(&str, Redo)>) {
        self.redo.set(event);
    }

    fn replay_failed(&self, id: &str, error: &str) -> anyhow::Result<()> {
        if let Some(mut letter) = self.letter(id)? {
            letter["attempts"] = (letter["attempts"].as_i64().unwrap_or(0) + 1).into();
            letter["error"] = error.into();
            self.set(&format!("dead:{id}"), &letter)?;
        }
        Ok(())
    }
}

impl NotificationStore for KvNotifications {
    fn get(&self, id: &str) -> anyhow::Result<Option<Notification>> {
        KvNotifications::get(self, &format!("n:{id}"))
    }

    /// Indexed and queued before it is saved, so a crash in between leaves an id that lists
    /// nothing (reads skip it, the sweep drops it), never a notification its customer cannot
    /// list or the sweep never retries. Replicas applying the same event at once both index the
    /// same id (a no-op the second time) and race on the save, which one of them wins.
    fn claim(&self, n: &Notification) -> anyhow::Result<bool> {
        let stream = partition_of(&n.order_id);
        index::append(self, &index::customer(&n.customer_id, stream), &n.id)?;
        if n.status.waiting() {
            index::append(self, &index::undelivered(stream), &n.id)?;
        }
        self.create(&format!("n:{}", n.id), n)
    }

    /// A notification stays queued until delivered: dequeued here when it is still the newest
    /// (delivered as it was recorded), otherwise by the sweep's pass over the queue.
    fn put(&self, n: &Notification) -> anyhow::Result<()> {
        self.set(&format!("n:{}", n.id), n)?;
        if n.status.waiting() {
            return Ok(());
        }
        index::remove_from_last(self, &index::undelivered(partition_of(&n.order_id)), &n.id)
    }

    fn by_order(&self, order_id: &str) -> anyhow::Result<Vec<Notification>> {
        let mut out = Vec::new();
        for kind in [Kind::OrderConfirmed, Kind::OrderCancelled] {
            if let Some(n) = NotificationStore::get(self, &Notification::id_for(order_id, kind))? {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Oldest first, across the customer's lists of every stream.
    fn by_customer(&self, customer_id: &str) -> anyhow::Result<Vec<Notification>> {
        let mut ids = Vec::new();
        for stream in partitions() {
            ids.extend(index::all(self, &index::customer(customer_id, stream))?);
        }
        let mut found = self.load(ids)?;
        found.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(found)
    }

    /// Drops from the queues what was delivered since the last pass.
    fn undelivered(&self) -> anyhow::Result<Vec<Notification>> {
        let mut out = Vec::new();
        for stream in partitions() {
            index::retain(self, &index::undelivered(stream), |id| {
                let waiting = NotificationStore::get(self, id)?.filter(|n| n.status.waiting());
                let keep = waiting.is_some();
                out.extend(waiting);
                Ok(keep)
            })?;
        }
        Ok(out)
    }

    fn breaker(&self) -> anyhow::Result<Breaker> {
        Ok(KvNotifications::get(self, "breaker")?.unwrap_or_default())
    }

    fn set_breaker(&self, breaker: &Breaker) -> anyhow::Result<()> {
        self.set("breaker", breaker)
    }
}
