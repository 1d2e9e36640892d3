//! Notification use cases, written against the `NotificationStore` and `Webhook` ports.
//!
//! The key-value store has no transactions, so the effect cannot commit together with the
//! inbox position. Instead the effect is idempotent (the notification id is derived from the
//! order and kind) and the inbox advances after it: a crash in between only repeats a no-op.

use shop_kit::consume::Consumer;
use shop_kit::inbox::{position, InboxPort, Outcome, Position};
use shop_kit::log::Logger;
use shop_kit::{ApiError, Envelope, Failure};

use crate::domain::{Breaker, Delivery, Notification};

/// Where notifications, their indexes, the inbox and the breaker live.
pub trait NotificationStore: InboxPort {
    fn get(&self, id: &str) -> anyhow::Result<Option<Notification>>;
    /// Saves a notification and indexes it by order and customer.
    fn put(&self, notification: &Notification) -> anyhow::Result<()>;
    fn by_order(&self, order_id: &str) -> anyhow::Result<Vec<Notification>>;
    fn by_customer(&self, customer_id: &str) -> anyhow::Result<Vec<Notification>>;
    /// Notifications whose delivery failed or never finished.
    fn undelivered(&self) -> anyhow::Result<Vec<Notification>>;
    fn breaker(&self) -> anyhow::Result<Breaker>;
    fn set_breaker(&self, breaker: &Breaker) -> anyhow::Result<()>;
}

/// Where notifications are delivered; `None` from `configured` means nowhere.
#[allow(async_fn_in_trait)] // components are single-threaded; no Send bound is wanted
pub trait Webhook {
    fn configured(&self) -> bool;
    async fn deliver(&self, notification: &Notification) -> anyhow::Result<()>;
}

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    pub threshold: u32,
    pub open_ms: i64,
}

pub struct Notifications<S, W> {
    pub store: S,
    pub webhook: W,
    pub policy: BreakerPolicy,
    pub log: Logger,
}

/// Attempts per delivery before the notification is marked failed.
const ATTEMPTS: u32 = 2;

impl<S: NotificationStore, W: Webhook> Notifications<S, W> {
    pub fn list(
        &self,
        order_id: Option<&str>,
        customer_id: Option<&str>,
    ) -> Result<Vec<Notification>, Failure> {
        match (order_id, customer_id) {
            (Some(o), None) => Ok(self.store.by_order(o)?),
            (None, Some(c)) => Ok(self.store.by_customer(c)?),
            (Some(o), Some(c)) => Ok(self
                .store
                .by_order(o)?
                .into_iter()
                .filter(|n| n.customer_id == c)
                .collect()),
            (None, None) => {
                Err(ApiError::invalid("order_id", "order_id or customer_id is required").into())
            }
        }
    }

    /// Delivers one notification through the breaker and records the result.
    async fn deliver(&self, mut n: Notification) -> anyhow::Result<Notification> {
        if !self.webhook.configured() {
            n.status = Delivery::Sent;
            self.store.put(&n)?;
            return Ok(n);
        }
        let mut breaker = self.store.breaker()?;
        n.status = Delivery::Failed;
        for _ in 0..ATTEMPTS {
            let now = shop_kit::time::now_millis();
            if !breaker.allows(now) {
                self.log
                    .warn("webhook breaker open; delivery deferred", Some(&n.order_id));
                break;
            }
            n.attempts += 1;
            let result = self.webhook.deliver(&n).await;
            breaker.record(
                result.is_ok(),
                shop_kit::time::now_millis(),
                self.policy.threshold,
                self.policy.open_ms,
            );
            match result {
                Ok(()) => {
                    n.status = Delivery::Delivered;
                    break;
                }
                Err(e) => self
                    .log
                    .warn(&format!("webhook failed: {e:#}"), Some(&n.order_id)),
            }
        }
        self.store.set_breaker(&breaker)?;
        self.store.put(&n)?;
        Ok(n)
    }

    /// Retries undelivered notifications (part of the sweep); returns how many got through.
    pub async fn redeliver(&self) -> anyhow::Result<usize> {
        let mut delivered = 0;
        for n in self.store.undelivered()? {
            if self.deliver(n).await?.status != Delivery::Failed {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    async fn apply_event(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        match position(self.store.inbox_last(&env.source)?, env.seq) {
            Position::Duplicate => return Ok(Outcome::Duplicate),
            Position::Gap { last } => return Ok(Outcome::Gap { last }),
            Position::Next => {}
        }
        if let Some(n) = Notification::for_event(&env.event()?, &shop_kit::time::now_rfc3339()) {
            if self.store.get(&n.id)?.is_none() {
                self.store.put(&n)?;
                let n = self.deliver(n).await?;
                self.log.info(
                    &format!("notification {} {:?}", n.id, n.status),
                    Some(&n.order_id),
                );
            }
        }
        self.store.inbox_advance(&env.source, env.seq)?;
        Ok(Outcome::Applied)
    }
}

impl<S: NotificationStore, W: Webhook> Consumer for Notifications<S, W> {
    fn last_seq(&self, source: &str) -> anyhow::Result<i64> {
        self.store.inbox_last(source)
    }

    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        self.apply_event(env).await
    }
}
