//! Billing use cases, written against the `BillingStore` and `PaymentProvider` ports.
//!
//! A provider call never runs inside a database transaction: billing checks what it must do,
//! calls the provider (idempotently, keyed by the order), then records the outcome and the
//! event in one transaction guarded by the inbox. A crash in between only repeats the
//! idempotent call. When a charge's outcome is unknown (a timeout, a 5xx), billing asks the
//! provider for the charge by its idempotency key before it concludes anything, and it asks
//! again for an order cancelled meanwhile, so that a charge that went through is refunded.

use shop_events::{ShopEvent, StockReserved};
use shop_kit::consume::{Consumer, ConsumerStore};
use shop_kit::inbox::{guarded, Outcome, Position};
use shop_kit::log::Logger;
use shop_kit::pending::{announce_parked, Pending};
use shop_kit::{ApiError, Envelope, Failure, TraceContext};

use crate::domain::{ChargeOutcome, Payment};

/// Where payments, the inbox and the outbox live.
pub trait BillingStore: ConsumerStore {
    fn transaction<T, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>;
    fn payment(&self, order_id: &str) -> anyhow::Result<Option<Payment>>;
    fn put_payment(&self, payment: &Payment) -> anyhow::Result<()>;
    /// Orders whose captured payment must still be refunded.
    fn owed_refunds(&self) -> anyhow::Result<Vec<Payment>>;
    fn emit(&self, event: &ShopEvent, traceparent: &str) -> anyhow::Result<()>;
}

/// The payment provider, reached through `payment_provider_url`.
#[allow(async_fn_in_trait)] // components are single-threaded; no Send bound is wanted
pub trait PaymentProvider {
    /// Charges once per idempotency key. A 4xx is the final answer `Rejected`; an error
    /// means the outcome is unknown.
    async fn charge(
        &self,
        amount_cents: i64,
        token: &str,
        idempotency_key: &str,
    ) -> anyhow::Result<ChargeOutcome>;
    /// The charge the provider made under `idempotency_key`; `None` when it never received
    /// one; an error while it is still processing or cannot be asked.
    async fn find_charge(&self, idempotency_key: &str) -> anyhow::Result<Option<ChargeOutcome>>;
    async fn refund(
        &self,
        provider_ref: &str,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> anyhow::Result<()>;
}

pub struct Billing<S, P> {
    pub store: S,
    pub provider: P,
    pub log: Logger,
}

impl<S: BillingStore, P: PaymentProvider> Billing<S, P> {
    pub fn payment(&self, order_id: &str) -> Result<serde_json::Value, Failure> {
        self.store
            .payment(order_id)?
            .and_then(|p| p.view())
            .ok_or_else(|| ApiError::not_found(format!("no payment for order {order_id}")).into())
    }

    fn current(&self, order_id: &str) -> anyhow::Result<Payment> {
        Ok(self
            .store
            .payment(order_id)?
            .unwrap_or_else(|| Payment::new(order_id)))
    }

    /// Charges a reserved order (unless cancelled or already charged) and records the result.
    async fn on_stock_reserved(
        &self,
        env: &Envelope,
        e: &StockReserved,
        traceparent: &str,
    ) -> anyhow::Result<Outcome> {
        match self.store.inbox_position(env)? {
            Position::Next => {}
            other => return Ok(other.into()),
        }
        let outcome = self.charge_outcome(e).await?;
        // Whether a refund may be owed: unknown unless the transaction below saw the payment.
        let owes_refund = std::cell::Cell::new(true);
        let applied = self.store.transaction(|| {
            guarded(&self.store, env, |store| {
                let Some(outcome) = outcome else {
                    return Ok(());
                };
                let mut payment = self.current(&e.order_id)?;
                if let Some(event) = payment.charged(e.total_cents, outcome) {
                    store.put_payment(&payment)?;
                    store.emit(&event, traceparent)?;
                }
                owes_refund.set(payment.owes_refund());
                Ok(())
            })
        })?;
        // The order may have been cancelled while the charge was in flight. A cancellation
        // committed after this transaction settles the refund itself.
        if owes_refund.get() {
            self.settle_refund(&e.order_id, traceparent).await;
        }
        Ok(applied)
    }

    /// What the provider did or does with the order's charge: charges an order that needs it;
    /// for an order cancelled first, looks up a charge sent before the cancellation. `None`:
    /// nothing was charged and nothing will be.
    async fn charge_outcome(&self, e: &StockReserved) -> anyhow::Result<Option<ChargeOutcome>> {
        let payment = self.current(&e.order_id)?;
        if payment.needs_charge() {
            let sent = self
                .provider
                .charge(e.total_cents, &e.payment_token, &e.idempotency_key)
                .await;
            return match sent {
                Ok(outcome) => Ok(Some(outcome)),
                // The charge may have gone through: only the provider knows.
                Err(unknown) => match self.provider.find_charge(&e.idempotency_key).await {
                    Ok(Some(outcome)) => Ok(Some(outcome)),
                    Ok(None) | Err(_) => Err(unknown),
                },
            };
        }
        if payment.cancelled && payment.status == crate::domain::PaymentStatus::None {
            return self.provider.find_charge(&e.idempotency_key).await;
        }
        Ok(None)
    }

    /// Refunds the order's payment if it is owed; failures are logged and left to the sweep.
    async fn settle_refund(&self, order_id: &str, traceparent: &str) {
        if let Err(e) = self.try_refund(order_id, traceparent).await {
            self.log
                .warn(&format!("refund deferred: {e:#}"), Some(order_id));
        }
    }

    async fn try_refund(&self, order_id: &str, traceparent: &str) -> anyhow::Result<()> {
        let payment = self.current(order_id)?;
        if !payment.owes_refund() {
            return Ok(());
        }
        let provider_ref = payment.provider_ref.clone().unwrap_or_default();
        let amount = payment.amount_cents.unwrap_or(0);
        self.provider
            .refund(&provider_ref, amount, &format!("refund-{order_id}"))
            .await?;
        self.store.transaction(|| {
            let mut payment = self.current(order_id)?;
            if let Some(event) = payment.refunded() {
                self.store.put_payment(&payment)?;
                self.store.emit(&event, traceparent)?;
                self.log.info("payment refunded", Some(order_id));
            }
            Ok::<_, anyhow::Error>(())
        })
    }

    /// Refunds every payment still owed (part of the sweep); returns how many were settled.
    pub async fn settle_owed_refunds(&self, trace: &TraceContext) -> anyhow::Result<usize> {
        let owed = self.store.owed_refunds()?;
        for payment in &owed {
            self.try_refund(&payment.order_id, &trace.child().header())
                .await?;
        }
        Ok(owed.len())
    }

    async fn apply_event(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        let event = env.event()?;
        let traceparent = TraceContext::from_header(Some(&env.traceparent))
            .child()
            .header();
        match &event {
            ShopEvent::StockReserved(e) => self.on_stock_reserved(env, e, &traceparent).await,
            ShopEvent::OrderCancelled(e) => {
                let applied = self.store.transaction(|| {
                    guarded(&self.store, env, |store| {
                        let mut payment = self.current(&e.order_id)?;
                        payment.cancelled = true;
                        store.put_payment(&payment)
                    })
                })?;
                self.settle_refund(&e.order_id, &traceparent).await;
                Ok(applied)
            }
            _ => self
                .store
                .transaction(|| guarded(&self.store, env, |_| Ok(()))),
        }
    }
}

impl<S: BillingStore, P: PaymentProvider> Consumer for Billing<S, P> {
    fn store(&self) -> &dyn ConsumerStore {
        &self.store
    }

    /// Tells orders, so that the order's history shows it.
    fn on_parked(&self, p: &Pending) -> anyhow::Result<()> {
        announce_parked(crate::SERVICE, p, |event, tp| self.store.emit(event, tp))
    }

    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        self.apply_event(env).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PaymentStatus;
    use shop_events::{CancelReason, OrderCancelled, PricedLine};
    use shop_kit::testing::in_stream_0;
    use shop_kit::testing::{block_on, Fake};
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default, Clone)]
    struct State {
        payments: HashMap<String, Payment>,
        outbox: Vec<ShopEvent>,
    }

    type Mem = Fake<State>;

    impl BillingStore for Mem {
        fn transaction<T, E: From<anyhow::Error>>(
            &self,
            f: impl FnOnce() -> Result<T, E>,
        ) -> Result<T, E> {
            self.rollback_on_error(f)
        }
        fn payment(&self, order_id: &str) -> anyhow::Result<Option<Payment>> {
            Ok(self.state().payments.get(order_id).cloned())
        }
        fn put_payment(&self, p: &Payment) -> anyhow::Result<()> {
            self.state_mut()
                .payments
                .insert(p.order_id.clone(), p.clone());
            Ok(())
        }
        fn owed_refunds(&self) -> anyhow::Result<Vec<Payment>> {
            Ok(self
                .state()
                .payments
                .values()
                .filter(|p| p.owes_refund())
                .cloned()
                .collect())
        }
        fn emit(&self, event: &ShopEvent, _: &str) -> anyhow::Result<()> {
            self.state_mut().outbox.push(event.clone());
            Ok(())
        }
    }

    /// A provider that captures (or declines `tok_decline`), counts calls, and can be down.
    #[derive(Default)]
    struct FakeProvider {
        charges: RefCell<Vec<String>>,
        refunds: RefCell<Vec<String>>,
        down: RefCell<bool>,
        /// Answers every charge with a 400.
        reject: RefCell<bool>,
    }

    impl PaymentProvider for FakeProvider {
        async fn charge(&self, _: i64, token: &str, key: &str) -> anyhow::Result<ChargeOutcome> {
            anyhow::ensure!(!*self.down.borrow(), "provider down");
            if *self.reject.borrow() {
                return Ok(ChargeOutcome::Rejected {
                    reason: "400 INVALID_ARGUMENT: token: no such token".into(),
                });
            }
            self.charges.borrow_mut().push(key.into());
            Ok(if token == "tok_decline" {
                ChargeOutcome::Declined {
                    provider_ref: "ch_d".into(),
                    reason: "card_declined".into(),
                }
            } else {
                ChargeOutcome::Captured {
                    provider_ref: format!("ch_{key}"),
                }
            })
        }
        async fn find_charge(&self, key: &str) -> anyhow::Result<Option<ChargeOutcome>> {
            anyhow::ensure!(!*self.down.borrow(), "provider down");
            Ok(self
                .charges
                .borrow()
                .iter()
                .any(|k| k == key)
                .then(|| ChargeOutcome::Captured {
                    provider_ref: format!("ch_{key}"),
                }))
        }
        async fn refund(&self, provider_ref: &str, _: i64, _: &str) -> anyhow::Result<()> {
            anyhow::ensure!(!*self.down.borrow(), "provider down");
            self.refunds.borrow_mut().push(provider_ref.into());
            Ok(())
        }
    }

    fn billing() -> Billing<Mem, FakeProvider> {
        Billing {
            store: Mem::default(),
            provider: FakeProvider::default(),
            log: Logger::new("billing", "t"),
        }
    }

    fn reserved(order_id: &str, token: &str) -> ShopEvent {
        ShopEvent::StockReserved(StockReserved {
            order_id: order_id.into(),
            customer_id: "c1".into(),
            lines: vec![PricedLine {
                sku: "A".into(),
                quantity: 1,
                unit_price_cents: 700,
            }],
            total_cents: 700,
            payment_token: token.into(),
            idempotency_key: order_id.into(),
        })
    }

    fn cancelled(order_id: &str) -> ShopEvent {
        ShopEvent::OrderCancelled(OrderCancelled {
            order_id: order_id.into(),
            customer_id: "c1".into(),
            reason: CancelReason::CancelledByCustomer,
        })
    }

    fn apply(
        b: &Billing<Mem, FakeProvider>,
        source: &str,
        seq: i64,
        event: ShopEvent,
    ) -> anyhow::Result<Outcome> {
        block_on(b.apply_event(&in_stream_0(source, seq, &event)))
    }

    fn status(b: &Billing<Mem, FakeProvider>, order_id: &str) -> PaymentStatus {
        b.store.payment(order_id).unwrap().unwrap().status
    }

    fn types(b: &Billing<Mem, FakeProvider>) -> Vec<&'static str> {
        b.store
            .state()
            .outbox
            .iter()
            .map(|e| e.type_name())
            .collect()
    }

    #[test]
    fn a_reserved_order_is_charged_once_with_its_key() {
        let b = billing();
        assert_eq!(
            apply(&b, "inventory", 1, reserved("o1", "tok_visa")).unwrap(),
            Outcome::Applied
        );
        assert_eq!(
            apply(&b, "inventory", 1, reserved("o1", "tok_visa")).unwrap(),
            Outcome::Duplicate
        );
        assert_eq!(*b.provider.charges.borrow(), vec!["o1".to_string()]);
        assert_eq!(status(&b, "o1"), PaymentStatus::Captured);
        assert_eq!(b.payment("o1").unwrap()["amount_cents"], 700);
        assert_eq!(types(&b), vec!["payment-captured"]);
    }

    #[test]
    fn a_declined_card_is_announced() {
        let b = billing();
        apply(&b, "inventory", 1, reserved("o1", "tok_decline")).unwrap();
        assert_eq!(status(&b, "o1"), PaymentStatus::Declined);
        assert_eq!(types(&b), vec!["payment-declined"]);
    }

    #[test]
    fn a_provider_outage_leaves_the_event_for_a_retry() {
        let b = billing();
        *b.provider.down.borrow_mut() = true;
        let outage = apply(&b, "inventory", 1, reserved("o1", "tok_visa")).unwrap_err();
        assert!(outage.to_string().contains("provider down"), "{outage}");
        assert_eq!(b.store.last_seq("inventory", 0), 0);
        *b.provider.down.borrow_mut() = false;
        assert_eq!(
            apply(&b, "inventory", 1, reserved("o1", "tok_visa")).unwrap(),
            Outcome::Applied
        );
        assert_eq!(status(&b, "o1"), PaymentStatus::Captured);
    }

    #[test]
    fn cancelled_before_the_charge_means_no_charge() {
        let b = billing();
        apply(&b, "orders", 1, cancelled("o1")).unwrap();
        apply(&b, "inventory", 1, reserved("o1", "tok_visa")).unwrap();
        assert!(b.provider.charges.borrow().is_empty());
        assert!(
            b.payment("o1").is_err(),
            "nothing was charged, so there is no payment"
        );
        assert!(types(&b).is_empty());
    }

    #[test]
    fn a_charge_that_went_through_unseen_before_a_cancel_is_found_and_refunded() {
        let b = billing();
        // The provider captured the charge but billing never heard the answer.
        b.provider.charges.borrow_mut().push("o1".into());
        apply(&b, "orders", 1, cancelled("o1")).unwrap();
        apply(&b, "inventory", 1, reserved("o1", "tok_visa")).unwrap();
        assert_eq!(
            *b.provider.charges.borrow(),
            vec!["o1".to_string()],
            "asked, not charged"
        );
        assert_eq!(status(&b, "o1"), PaymentStatus::Refunded);
        assert_eq!(types(&b), vec!["payment-captured", "payment-refunded"]);
    }

    #[test]
    fn a_charge_the_provider_rejects_is_final() {
        let b = billing();
        b.provider.reject.replace(true);
        assert_eq!(
            apply(&b, "inventory", 1, reserved("o1", "tok_visa")).unwrap(),
            Outcome::Applied
        );
        assert_eq!(status(&b, "o1"), PaymentStatus::Declined);
        let declined = &b.store.state().outbox[0];
        let ShopEvent::PaymentDeclined(e) = declined else {
            panic!("{declined:?}")
        };
        assert!(
            e.reason.starts_with("provider_rejected: 400"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn a_captured_payment_of_a_cancelled_order_is_refunded() {
        let b = billing();
        apply(&b, "inventory", 1, reserved("o1", "tok_visa")).unwrap();
        *b.provider.down.borrow_mut() = true;
        apply(&b, "orders", 1, cancelled("o1")).unwrap();
        assert_eq!(
            status(&b, "o1"),
            PaymentStatus::Captured,
            "refund deferred while down"
        );
        *b.provider.down.borrow_mut() = false;
        assert_eq!(
            block_on(b.settle_owed_refunds(&TraceContext::new_root())).unwrap(),
            1
        );
        assert_eq!(status(&b, "o1"), PaymentStatus::Refunded);
        assert_eq!(types(&b), vec!["payment-captured", "payment-refunded"]);
        assert_eq!(
            block_on(b.settle_owed_refunds(&TraceContext::new_root())).unwrap(),
            0
        );
    }
}
