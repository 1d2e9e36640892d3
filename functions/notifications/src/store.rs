//! Key-value adapter of the `NotificationStore` port (store label `notifications`).
//!
//! Keys: `n:<id>` a notification; `customer:<id>...` the customer's notification ids and
//! `undelivered...` the queue of those still to deliver, in pages (see `index`);
//! `inbox:<source>` last applied seq;
//! `breaker`. An order's notifications need no index: their ids derive from the order id and
//! the kind.
//! Poison events: `failures:<source>:<seq>` counts failed attempts, `dead:<source>:<seq>`
//! holds a parked event and `dead_letters` lists their `<source>:<seq>`. Without transactions
//! a letter is written before the inbox moves past it, so a crash in between only parks it
//! again; concurrent failures may count once, which parks an event an attempt later.

use std::cell::RefCell;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use shop_kit::breaker::Breaker;
use shop_kit::deadletter::{self, DeadLetterPort, ParkedStore};
use shop_kit::inbox::{position, InboxPort, Outcome, Position};
use shop_kit::Envelope;
use spin_sdk::key_value::Store;

use crate::domain::{Kind, Notification};
use crate::index::{self, PageStore};
use crate::service::NotificationStore;

pub struct KvNotifications {
    store: Store,
    /// The dead letter being replayed by this instance, if any.
    replaying: RefCell<Option<(String, i64)>>,
}

/// Failed attempts at one event so far.
#[derive(Default, Serialize, Deserialize)]
struct Failures {
    attempts: i64,
    error: String,
}

/// The list of parked events.
const LETTERS: &str = "dead_letters";

fn letter_id(source: &str, seq: i64) -> String {
    format!("{source}:{seq}")
}

impl KvNotifications {
    pub fn open() -> anyhow::Result<Self> {
        let store = Store::open("notifications")
            .map_err(|e| anyhow::anyhow!("opening key-value store notifications: {e:?}"))?;
        Ok(Self {
            store,
            replaying: RefCell::default(),
        })
    }

    fn replaying(&self, source: &str) -> Option<i64> {
        match &*self.replaying.borrow() {
            Some((s, seq)) if s == source => Some(*seq),
            _ => None,
        }
    }

    fn stored_last(&self, source: &str) -> anyhow::Result<i64> {
        Ok(self.get(&format!("inbox:{source}"))?.unwrap_or(0))
    }

    fn letter(&self, source: &str, seq: i64) -> anyhow::Result<Option<Value>> {
        self.get(&format!("dead:{}", letter_id(source, seq)))
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

impl InboxPort for KvNotifications {
    fn inbox_last(&self, source: &str) -> anyhow::Result<i64> {
        match self.replaying(source) {
            Some(seq) => Ok(seq - 1),
            None => self.stored_last(source),
        }
    }

    /// Never moves back: a replayed dead letter advances to its own seq, behind the inbox,
    /// and is deleted once its effect is done.
    fn inbox_advance(&self, source: &str, seq: i64) -> anyhow::Result<()> {
        if seq > self.stored_last(source)? {
            self.set(&format!("inbox:{source}"), &seq)?;
        }
        if self.replaying(source) == Some(seq) {
            let id = letter_id(source, seq);
            self.delete(&format!("dead:{id}"))?;
            self.index(LETTERS, &id, false)?;
        }
        Ok(())
    }

    fn dead_letters(&self) -> Option<&dyn DeadLetterPort> {
        Some(self)
    }
}

impl DeadLetterPort for KvNotifications {
    fn after(&self) -> i64 {
        deadletter::after_from_variables()
    }

    fn count_failure(&self, env: &Envelope, error: &str) -> anyhow::Result<i64> {
        let key = format!("failures:{}", letter_id(&env.source, env.seq));
        let mut failures: Failures = self.get(&key)?.unwrap_or_default();
        failures.attempts += 1;
        failures.error = error.to_string();
        self.set(&key, &failures)?;
        Ok(failures.attempts)
    }

    fn park(&self, env: &Envelope, error: &str, attempts: i64) -> anyhow::Result<Outcome> {
        match position(self.inbox_last(&env.source)?, env.seq) {
            Position::Duplicate => Ok(Outcome::Duplicate),
            Position::Gap { last } => Ok(Outcome::Gap { last }),
            Position::Next => {
                let id = letter_id(&env.source, env.seq);
                let now = shop_kit::time::now_rfc3339();
                let letter = deadletter::letter_json(env, error, attempts, &now);
                self.set(&format!("dead:{id}"), &letter)?;
                self.index(LETTERS, &id, true)?;
                self.delete(&format!("failures:{id}"))?;
                self.inbox_advance(&env.source, env.seq)?;
                Ok(Outcome::Parked)
            }
        }
    }
}

impl ParkedStore for KvNotifications {
    fn parked(&self) -> anyhow::Result<Vec<Value>> {
        let mut letters = Vec::new();
        for id in self.ids(LETTERS)? {
            if let Some(letter) = self.get::<Value>(&format!("dead:{id}"))? {
                letters.push(letter);
            }
        }
        letters.sort_by_key(|l| (l["parked_at"].to_string(), l["seq"].as_i64()));
        Ok(letters)
    }

    fn parked_event(&self, source: &str, seq: i64) -> anyhow::Result<Option<Envelope>> {
        self.letter(source, seq)?
            .map(|letter| serde_json::from_value(letter["payload"].clone()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("dead letter {source}/{seq} is unreadable: {e}"))
    }

    fn set_replaying(&self, letter: Option<(String, i64)>) {
        *self.replaying.borrow_mut() = letter;
    }

    fn replay_failed(&self, source: &str, seq: i64, error: &str) -> anyhow::Result<()> {
        if let Some(mut letter) = self.letter(source, seq)? {
            letter["attempts"] = (letter["attempts"].as_i64().unwrap_or(0) + 1).into();
            letter["error"] = error.into();
            self.set(&format!("dead:{}", letter_id(source, seq)), &letter)?;
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
    /// list or the sweep never retries.
    fn insert(&self, n: &Notification) -> anyhow::Result<()> {
        index::append(self, &index::customer(&n.customer_id), &n.id)?;
        if n.status.waiting() {
            index::append(self, index::UNDELIVERED, &n.id)?;
        }
        self.set(&format!("n:{}", n.id), n)
    }

    /// A notification stays queued until delivered: dequeued here when it is still the newest
    /// (delivered as it was recorded), otherwise by the sweep's pass over the queue.
    fn put(&self, n: &Notification) -> anyhow::Result<()> {
        self.set(&format!("n:{}", n.id), n)?;
        if n.status.waiting() {
            return Ok(());
        }
        index::remove_from_last(self, index::UNDELIVERED, &n.id)
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

    fn by_customer(&self, customer_id: &str) -> anyhow::Result<Vec<Notification>> {
        self.load(index::all(self, &index::customer(customer_id))?)
    }

    /// Drops from the queue what was delivered since the last pass.
    fn undelivered(&self) -> anyhow::Result<Vec<Notification>> {
        let mut out = Vec::new();
        index::retain(self, index::UNDELIVERED, |id| {
            let waiting = NotificationStore::get(self, id)?.filter(|n| n.status.waiting());
            let keep = waiting.is_some();
            out.extend(waiting);
            Ok(keep)
        })?;
        Ok(out)
    }

    fn breaker(&self) -> anyhow::Result<Breaker> {
        Ok(KvNotifications::get(self, "breaker")?.unwrap_or_default())
    }

    fn set_breaker(&self, breaker: &Breaker) -> anyhow::Result<()> {
        self.set("breaker", breaker)
    }
}
