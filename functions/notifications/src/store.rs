//! Key-value adapter of the `NotificationStore` port (store label `notifications`).
//!
//! Keys: `n:<id>` a notification; `customer:<id>` a list of notification ids; `undelivered`
//! ids still to deliver; `inbox:<source>` last applied seq; `breaker`. An order's
//! notifications need no index: their ids derive from the order id and the kind.

use serde::{de::DeserializeOwned, Serialize};
use shop_kit::breaker::Breaker;
use shop_kit::inbox::InboxPort;
use spin_sdk::key_value::Store;

use crate::domain::{Delivery, Kind, Notification};
use crate::service::NotificationStore;

pub struct KvNotifications {
    store: Store,
}

impl KvNotifications {
    pub fn open() -> anyhow::Result<Self> {
        let store = Store::open("notifications")
            .map_err(|e| anyhow::anyhow!("opening key-value store notifications: {e:?}"))?;
        Ok(Self { store })
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        self.store.get_json(key)
    }

    fn set<T: Serialize>(&self, key: &str, value: &T) -> anyhow::Result<()> {
        self.store.set_json(key, value)
    }

    fn ids(&self, key: &str) -> anyhow::Result<Vec<String>> {
        Ok(self.get(key)?.unwrap_or_default())
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

    fn load(&self, key: &str) -> anyhow::Result<Vec<Notification>> {
        let mut out = Vec::new();
        for id in self.ids(key)? {
            if let Some(n) = NotificationStore::get(self, &id)? {
                out.push(n);
            }
        }
        Ok(out)
    }
}

impl InboxPort for KvNotifications {
    fn inbox_last(&self, source: &str) -> anyhow::Result<i64> {
        Ok(self.get(&format!("inbox:{source}"))?.unwrap_or(0))
    }

    fn inbox_advance(&self, source: &str, seq: i64) -> anyhow::Result<()> {
        self.set(&format!("inbox:{source}"), &seq)
    }
}

impl NotificationStore for KvNotifications {
    fn get(&self, id: &str) -> anyhow::Result<Option<Notification>> {
        KvNotifications::get(self, &format!("n:{id}"))
    }

    fn put(&self, n: &Notification) -> anyhow::Result<()> {
        self.set(&format!("n:{}", n.id), n)?;
        self.index(&format!("customer:{}", n.customer_id), &n.id, true)?;
        let undelivered = matches!(n.status, Delivery::Pending | Delivery::Failed);
        self.index("undelivered", &n.id, undelivered)
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
        self.load(&format!("customer:{customer_id}"))
    }

    fn undelivered(&self) -> anyhow::Result<Vec<Notification>> {
        self.load("undelivered")
    }

    fn breaker(&self) -> anyhow::Result<Breaker> {
        Ok(KvNotifications::get(self, "breaker")?.unwrap_or_default())
    }

    fn set_breaker(&self, breaker: &Breaker) -> anyhow::Result<()> {
        self.set("breaker", breaker)
    }
}
