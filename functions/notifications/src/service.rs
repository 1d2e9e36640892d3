//! Notification use cases, written against the `NotificationStore` and `Webhook` ports.
//!
//! The key-value store has no transactions, so the effect cannot commit together with the
//! inbox position. Instead the effect is idempotent (the notification id is derived from the
//! order and kind) and the inbox advances after it: a crash in between only repeats a no-op.

use shop_kit::breaker::{Breaker, Policy};
use shop_kit::consume::{Consumer, ConsumerStore};
use shop_kit::inbox::{Outcome, Position};
use shop_kit::log::Logger;
use shop_kit::{ApiError, Envelope, Failure};

use crate::domain::{Delivery, Notification};

/// Where notifications, their indexes, the inbox and the breaker live.
pub trait NotificationStore: ConsumerStore {
    fn get(&self, id: &str) -> anyhow::Result<Option<Notification>>;
    /// Saves a new notification and indexes it by customer (an order's notifications are
    /// found by their ids), unless one with its id exists: true when this call saved it, and
    /// so delivers it. Atomic across instances, so that replicas applying the same event at
    /// once call the webhook once.
    fn claim(&self, notification: &Notification) -> anyhow::Result<bool>;
    /// Saves a notification already inserted: its delivery status and attempts.
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

pub struct Notifications<S, W> {
    pub store: S,
    pub webhook: W,
    pub policy: Policy,
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
        let mut delivered = false;
        for _ in 0..ATTEMPTS {
            let now = shop_kit::time::now_millis();
            if !breaker.acquire(now, self.policy) {
                self.log
                    .warn("webhook breaker open; delivery deferred", Some(&n.order_id));
                break;
            }
            n.attempts += 1;
            let result = self.webhook.deliver(&n).await;
            delivered = result.is_ok();
            breaker.record(delivered, shop_kit::time::now_millis(), self.policy);
            match result {
                Ok(()) => break,
                Err(e) => self
                    .log
                    .warn(&format!("webhook failed: {e:#}"), Some(&n.order_id)),
            }
        }
        n.status = if delivered {
            Delivery::Delivered
        } else {
            Delivery::Failed
        };
        self.store.set_breaker(&breaker)?;
        self.store.put(&n)?;
        Ok(n)
    }

    /// Retries undelivered notifications that are due (part of the sweep; a pending one is
    /// left to the instance delivering it for a grace, see `due_for_redelivery`); returns how
    /// many got through.
    pub async fn redeliver(&self) -> anyhow::Result<usize> {
        let mut delivered = 0;
        let now = shop_kit::time::now_millis();
        for n in self.store.undelivered()? {
            if !n.due_for_redelivery(now) {
                continue;
            }
            if self.deliver(n).await?.status != Delivery::Failed {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    async fn apply_event(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        match self.store.inbox_position(env)? {
            Position::Next => {}
            other => return Ok(other.into()),
        }
        if let Some(mut n) = Notification::for_event(&env.event()?, &shop_kit::time::now_rfc3339())
        {
            if !self.webhook.configured() {
                // Nothing to deliver to: recorded as sent, in one write, and never queued.
                n.status = Delivery::Sent;
            }
            if self.store.claim(&n)? {
                let n = if self.webhook.configured() {
                    self.deliver(n).await?
                } else {
                    n
                };
                self.log.info(
                    &format!("notification {} {:?}", n.id, n.status),
                    Some(&n.order_id),
                );
            }
        }
        self.store.inbox_record(env)?;
        Ok(Outcome::Applied)
    }
}

impl<S: NotificationStore, W: Webhook> Consumer for Notifications<S, W> {
    fn store(&self) -> &dyn ConsumerStore {
        &self.store
    }

    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        self.apply_event(env).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Kind;
    use shop_events::{CancelReason, OrderCancelled, OrderConfirmed, OrderCreated, ShopEvent};
    use shop_kit::inbox::{position, InboxPort, Streams};
    use shop_kit::testing::block_on;
    use shop_kit::testing::in_stream_0;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Mem {
        notifications: RefCell<BTreeMap<String, Notification>>,
        writes: RefCell<u32>,
        inbox: RefCell<Streams>,
        breaker: RefCell<Breaker>,
    }

    impl InboxPort for Mem {
        fn inbox_position(&self, env: &Envelope) -> anyhow::Result<Position> {
            Ok(position(
                self.inbox.borrow().last(&env.source, env.partition),
                env.seq,
            ))
        }
        fn inbox_record(&self, env: &Envelope) -> anyhow::Result<()> {
            self.inbox.borrow_mut().advance(env);
            Ok(())
        }
    }

    impl ConsumerStore for Mem {
        fn last_seq(&self, source: &str, partition: i64) -> anyhow::Result<i64> {
            Ok(self.inbox.borrow().last(source, partition))
        }
    }

    impl NotificationStore for Mem {
        fn get(&self, id: &str) -> anyhow::Result<Option<Notification>> {
            Ok(self.notifications.borrow().get(id).cloned())
        }
        fn claim(&self, n: &Notification) -> anyhow::Result<bool> {
            if self.notifications.borrow().contains_key(&n.id) {
                return Ok(false);
            }
            self.put(n)?;
            Ok(true)
        }
        fn put(&self, n: &Notification) -> anyhow::Result<()> {
            *self.writes.borrow_mut() += 1;
            self.notifications
                .borrow_mut()
                .insert(n.id.clone(), n.clone());
            Ok(())
        }
        fn by_order(&self, order_id: &str) -> anyhow::Result<Vec<Notification>> {
            Ok(self
                .notifications
                .borrow()
                .values()
                .filter(|n| n.order_id == order_id)
                .cloned()
                .collect())
        }
        fn by_customer(&self, customer_id: &str) -> anyhow::Result<Vec<Notification>> {
            Ok(self
                .notifications
                .borrow()
                .values()
                .filter(|n| n.customer_id == customer_id)
                .cloned()
                .collect())
        }
        fn undelivered(&self) -> anyhow::Result<Vec<Notification>> {
            Ok(self
                .notifications
                .borrow()
                .values()
                .filter(|n| n.status.waiting())
                .cloned()
                .collect())
        }
        fn breaker(&self) -> anyhow::Result<Breaker> {
            Ok(*self.breaker.borrow())
        }
        fn set_breaker(&self, b: &Breaker) -> anyhow::Result<()> {
            *self.breaker.borrow_mut() = *b;
            Ok(())
        }
    }

    /// A webhook that can be unset, up or failing, and counts its calls.
    #[derive(Default)]
    struct FakeWebhook {
        configured: bool,
        failing: RefCell<bool>,
        calls: RefCell<u32>,
    }

    impl Webhook for FakeWebhook {
        fn configured(&self) -> bool {
            self.configured
        }
        async fn deliver(&self, _: &Notification) -> anyhow::Result<()> {
            *self.calls.borrow_mut() += 1;
            anyhow::ensure!(!*self.failing.borrow(), "webhook down");
            Ok(())
        }
    }

    fn service(configured: bool) -> Notifications<Mem, FakeWebhook> {
        Notifications {
            store: Mem::default(),
            webhook: FakeWebhook {
                configured,
                ..FakeWebhook::default()
            },
            policy: Policy {
                threshold: 2,
                open_ms: 60_000,
            },
            log: Logger::new("notifications", "t"),
        }
    }

    fn confirmed(order_id: &str) -> ShopEvent {
        ShopEvent::OrderConfirmed(OrderConfirmed {
            order_id: order_id.into(),
            customer_id: "c1".into(),
            total_cents: 5,
        })
    }

    fn apply(s: &Notifications<Mem, FakeWebhook>, seq: i64, event: ShopEvent) -> Outcome {
        block_on(s.apply_event(&in_stream_0("orders", seq, &event))).unwrap()
    }

    #[test]
    fn one_notification_per_final_state() {
        let s = service(false);
        let created = ShopEvent::OrderCreated(OrderCreated {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            items: vec![],
            payment_token: "t".into(),
        });
        apply(&s, 1, created);
        apply(&s, 2, confirmed("o1"));
        assert_eq!(apply(&s, 2, confirmed("o1")), Outcome::Duplicate);
        let cancelled = ShopEvent::OrderCancelled(OrderCancelled {
            order_id: "o2".into(),
            customer_id: "c1".into(),
            reason: CancelReason::OutOfStock,
        });
        apply(&s, 3, cancelled);
        let mine = s.list(None, Some("c1")).unwrap();
        assert_eq!(mine.len(), 2);
        let o1 = s.list(Some("o1"), None).unwrap();
        assert_eq!(
            (o1[0].kind, o1[0].status),
            (Kind::OrderConfirmed, Delivery::Sent)
        );
        assert!(s.list(None, None).is_err());
    }

    #[test]
    fn without_a_webhook_a_notification_is_recorded_sent_in_one_write() {
        let s = service(false);
        apply(&s, 1, confirmed("o1"));
        assert_eq!(*s.store.writes.borrow(), 1);
        assert_eq!(s.list(Some("o1"), None).unwrap()[0].status, Delivery::Sent);
        assert!(s.store.undelivered().unwrap().is_empty());
    }

    #[test]
    fn a_redelivered_event_does_not_notify_twice() {
        let s = service(true);
        apply(&s, 1, confirmed("o1"));
        *s.store.inbox.borrow_mut() = Streams::default(); // as if the inbox write had been lost
        apply(&s, 1, confirmed("o1"));
        assert_eq!(*s.webhook.calls.borrow(), 1);
        assert_eq!(
            s.list(Some("o1"), None).unwrap()[0].status,
            Delivery::Delivered
        );
    }

    #[test]
    fn the_sweep_does_not_call_the_webhook_for_a_delivery_still_under_way() {
        let s = service(true);
        // Saved just now by another replica, whose webhook call has not returned yet.
        let event = in_stream_0("orders", 1, &confirmed("o1")).event().unwrap();
        let n = Notification::for_event(&event, &shop_kit::time::now_rfc3339()).unwrap();
        assert!(s.store.claim(&n).unwrap());
        assert_eq!(block_on(s.redeliver()).unwrap(), 0);
        assert_eq!(*s.webhook.calls.borrow(), 0);
    }

    #[test]
    fn failures_open_the_breaker_and_the_sweep_redelivers() {
        let s = service(true);
        *s.webhook.failing.borrow_mut() = true;
        apply(&s, 1, confirmed("o1"));
        apply(&s, 2, confirmed("o2"));
        assert_eq!(
            *s.webhook.calls.borrow(),
            2,
            "the breaker opened after two failures"
        );
        assert_eq!(
            s.list(Some("o2"), None).unwrap()[0].status,
            Delivery::Failed
        );
        *s.webhook.failing.borrow_mut() = false;
        *s.store.breaker.borrow_mut() = Breaker::default(); // the open period has passed
        assert_eq!(block_on(s.redeliver()).unwrap(), 2);
        assert!(s.store.undelivered().unwrap().is_empty());
    }
}
