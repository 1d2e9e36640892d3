//! Billing: what billing knows of each order's payment. Pure: no I/O.

use serde::Serialize;
use serde_json::{json, Value};
use shop_events::{PaymentCaptured, PaymentDeclined, PaymentRefunded, ShopEvent};

pub const CURRENCY: &str = "USD";

/// How a `payment-declined` reason begins when the provider refused the request itself (not
/// the card), so that orders can tell the two apart.
pub const PROVIDER_REJECTED: &str = "provider_rejected";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Not charged (yet, or ever: the order was cancelled first).
    None,
    Captured,
    Declined,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::None => "none",
            PaymentStatus::Captured => "captured",
            PaymentStatus::Declined => "declined",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::None, Self::Captured, Self::Declined, Self::Refunded]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// What the provider answered to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Captured {
        provider_ref: String,
    },
    Declined {
        provider_ref: String,
        reason: String,
    },
    /// The provider refused the request with a 4xx (invalid amount, key reused for another
    /// charge, bad token...): nothing was charged, and asking again gets the same answer, so
    /// it is final. `reason` is `<status> <error code>: <message>` as the provider answered.
    Rejected {
        reason: String,
    },
}

/// Billing's record of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub order_id: String,
    pub amount_cents: Option<i64>,
    pub currency: String,
    pub status: PaymentStatus,
    pub provider_ref: Option<String>,
    /// The order was cancelled: never charge it, refund a capture.
    pub cancelled: bool,
}

impl Payment {
    pub fn new(order_id: &str) -> Self {
        Self {
            order_id: order_id.to_string(),
            amount_cents: None,
            currency: CURRENCY.to_string(),
            status: PaymentStatus::None,
            provider_ref: None,
            cancelled: false,
        }
    }

    /// Whether a reserved order should be charged now.
    pub fn needs_charge(&self) -> bool {
        !self.cancelled && self.status == PaymentStatus::None
    }

    /// Records the provider's answer; returns the event to publish, if this is news.
    pub fn charged(&mut self, amount_cents: i64, outcome: ChargeOutcome) -> Option<ShopEvent> {
        if self.status != PaymentStatus::None {
            return None;
        }
        self.amount_cents = Some(amount_cents);
        Some(match outcome {
            ChargeOutcome::Captured { provider_ref } => {
                self.status = PaymentStatus::Captured;
                self.provider_ref = Some(provider_ref.clone());
                ShopEvent::PaymentCaptured(PaymentCaptured {
                    order_id: self.order_id.clone(),
                    amount_cents,
                    provider_ref,
                })
            }
            ChargeOutcome::Declined {
                provider_ref,
                reason,
            } => {
                self.status = PaymentStatus::Declined;
                self.provider_ref = Some(provider_ref);
                ShopEvent::PaymentDeclined(PaymentDeclined {
                    order_id: self.order_id.clone(),
                    amount_cents,
                    reason,
                })
            }
            ChargeOutcome::Rejected { reason } => {
                self.status = PaymentStatus::Declined;
                ShopEvent::PaymentDeclined(PaymentDeclined {
                    order_id: self.order_id.clone(),
                    amount_cents,
                    reason: format!("{PROVIDER_REJECTED}: {reason}"),
                })
            }
        })
    }

    /// A refund is owed: the order was cancelled but its payment captured.
    pub fn owes_refund(&self) -> bool {
        self.cancelled && self.status == PaymentStatus::Captured
    }

    /// Records a refund; returns the event to publish, if one was owed.
    pub fn refunded(&mut self) -> Option<ShopEvent> {
        if !self.owes_refund() {
            return None;
        }
        self.status = PaymentStatus::Refunded;
        Some(ShopEvent::PaymentRefunded(PaymentRefunded {
            order_id: self.order_id.clone(),
            amount_cents: self.amount_cents.unwrap_or(0),
            provider_ref: self.provider_ref.clone().unwrap_or_default(),
        }))
    }

    /// The payment as the API shows it; `None` while nothing was charged.
    pub fn view(&self) -> Option<Value> {
        (self.status != PaymentStatus::None).then(|| {
            json!({
                "order_id": self.order_id,
                "amount_cents": self.amount_cents,
                "currency": self.currency,
                "status": self.status.as_str(),
                "provider_ref": self.provider_ref,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured() -> ChargeOutcome {
        ChargeOutcome::Captured {
            provider_ref: "ch_1".into(),
        }
    }

    #[test]
    fn a_charge_is_recorded_once() {
        let mut p = Payment::new("o1");
        assert!(p.needs_charge());
        let e = p.charged(500, captured()).unwrap();
        assert_eq!(e.type_name(), "payment-captured");
        assert!(p.charged(500, captured()).is_none());
        assert!(!p.needs_charge());
        assert_eq!(p.view().unwrap()["status"], "captured");
    }

    #[test]
    fn a_cancelled_order_is_not_charged_and_a_capture_is_refunded() {
        let mut p = Payment::new("o1");
        p.cancelled = true;
        assert!(!p.needs_charge());
        assert!(p.view().is_none());

        let mut p = Payment::new("o2");
        p.charged(500, captured());
        assert!(!p.owes_refund());
        p.cancelled = true;
        assert!(p.owes_refund());
        let e = p.refunded().unwrap();
        assert_eq!(e.type_name(), "payment-refunded");
        assert!(p.refunded().is_none());
        assert_eq!(p.view().unwrap()["status"], "refunded");
    }

    fn declined_reason(event: ShopEvent) -> String {
        match event {
            ShopEvent::PaymentDeclined(d) => d.reason,
            other => panic!("expected payment-declined, got {}", other.type_name()),
        }
    }

    #[test]
    fn a_declined_payment_owes_nothing() {
        let mut p = Payment::new("o1");
        let e = p
            .charged(
                500,
                ChargeOutcome::Declined {
                    provider_ref: "ch_2".into(),
                    reason: "card_declined".into(),
                },
            )
            .unwrap();
        assert_eq!(declined_reason(e), "card_declined");
        assert_eq!(p.provider_ref.as_deref(), Some("ch_2"));
        p.cancelled = true;
        assert!(!p.owes_refund());
    }

    #[test]
    fn a_rejected_request_is_a_final_decline_naming_the_provider_answer() {
        let mut p = Payment::new("o1");
        let rejected = || ChargeOutcome::Rejected {
            reason: "409 CONFLICT: idempotency_key was already used with a different charge".into(),
        };
        let e = p.charged(500, rejected()).unwrap();
        assert_eq!(
            declined_reason(e),
            "provider_rejected: 409 CONFLICT: idempotency_key was already used with a different charge"
        );
        assert_eq!(p.status, PaymentStatus::Declined);
        assert_eq!(p.provider_ref, None, "nothing was charged");
        assert!(
            !p.needs_charge(),
            "a rejection is final: never charged again"
        );
        assert!(p.charged(500, rejected()).is_none());
        assert_eq!(p.view().unwrap()["status"], "declined");
        p.cancelled = true;
        assert!(!p.owes_refund());
    }
}
