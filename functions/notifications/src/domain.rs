//! Notifications: one per final order state.
//! Pure: no I/O.

use serde::{Deserialize, Serialize};
use shop_events::ShopEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    OrderConfirmed,
    OrderCancelled,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OrderConfirmed => "order_confirmed",
            Kind::OrderCancelled => "order_cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Recorded, delivery not finished yet.
    Pending,
    /// Recorded; no webhook is configured.
    Sent,
    /// The webhook accepted it.
    Delivered,
    /// The webhook failed (or its breaker was open); the sweep retries.
    Failed,
}

impl Delivery {
    /// Whether delivery is still owed: the sweep retries such notifications.
    pub fn waiting(self) -> bool {
        matches!(self, Delivery::Pending | Delivery::Failed)
    }
}

/// How long a `Pending` notification is left to the instance that saved it before the sweep
/// delivers it instead: longer than that first delivery lasts (its attempts of at most
/// `webhook_timeout_ms` each, 5 s by default), so that a sweep on another replica does not call
/// the webhook while it is still being called; after that, the first delivery was cut (its
/// instance died) and the sweep's is the one owed.
pub const REDELIVERY_GRACE_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub order_id: String,
    pub customer_id: String,
    pub kind: Kind,
    pub status: Delivery,
    pub created_at: String,
    /// Webhook attempts so far.
    pub attempts: u32,
}

impl Notification {
    /// Whether the sweep delivers it now: a failed delivery at once, a pending one only once
    /// its first delivery is surely over ([`REDELIVERY_GRACE_MS`]).
    pub fn due_for_redelivery(&self, now_ms: i64) -> bool {
        match self.status {
            Delivery::Failed => true,
            Delivery::Pending => shop_kit::time::millis_of(&self.created_at)
                .is_none_or(|created| now_ms - created >= REDELIVERY_GRACE_MS),
            Delivery::Sent | Delivery::Delivered => false,
        }
    }

    /// The id of the notification of `kind` for an order.
    pub fn id_for(order_id: &str, kind: Kind) -> String {
        format!("{order_id}:{}", kind.as_str())
    }

    /// The notification a final order state calls for; its id is derived from the order and
    /// the kind, so handling the same event twice can never make two.
    pub fn for_event(event: &ShopEvent, now: &str) -> Option<Self> {
        let (order_id, customer_id, kind) = match event {
            ShopEvent::OrderConfirmed(e) => (&e.order_id, &e.customer_id, Kind::OrderConfirmed),
            ShopEvent::OrderCancelled(e) => (&e.order_id, &e.customer_id, Kind::OrderCancelled),
            _ => return None,
        };
        Some(Self {
            id: Self::id_for(order_id, kind),
            order_id: order_id.clone(),
            customer_id: customer_id.clone(),
            kind,
            status: Delivery::Pending,
            created_at: now.to_string(),
            attempts: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_events::{CancelReason, OrderCancelled, OrderCreated};

    #[test]
    fn the_sweep_leaves_a_pending_delivery_to_its_instance_for_the_grace() {
        let event = ShopEvent::OrderCancelled(OrderCancelled {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            reason: CancelReason::OutOfStock,
        });
        let saved = "2026-12-07T09:00:00.000Z";
        let at = shop_kit::time::millis_of(saved).unwrap();
        let mut n = Notification::for_event(&event, saved).unwrap();
        assert_eq!(n.status, Delivery::Pending);
        assert!(!n.due_for_redelivery(at + REDELIVERY_GRACE_MS - 1));
        assert!(n.due_for_redelivery(at + REDELIVERY_GRACE_MS));
        n.status = Delivery::Failed;
        assert!(n.due_for_redelivery(at));
        n.status = Delivery::Delivered;
        assert!(!n.due_for_redelivery(at + REDELIVERY_GRACE_MS));
        n.status = Delivery::Pending;
        n.created_at = "not a time".into();
        assert!(
            n.due_for_redelivery(at),
            "an unreadable time must not strand it"
        );
    }

    #[test]
    fn only_final_states_notify_with_a_stable_id() {
        let cancelled = ShopEvent::OrderCancelled(OrderCancelled {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            reason: CancelReason::OutOfStock,
        });
        let a = Notification::for_event(&cancelled, "t1").unwrap();
        let b = Notification::for_event(&cancelled, "t2").unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.kind.as_str(), "order_cancelled");
        let created = ShopEvent::OrderCreated(OrderCreated {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            items: vec![],
            payment_token: "t".into(),
        });
        assert!(Notification::for_event(&created, "t").is_none());
    }
}
