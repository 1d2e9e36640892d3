//! Billing use cases, written against the `BillingStore` and `PaymentProvider` ports.
//!
//! A provider call never runs inside a database transaction: billing checks what it must do,
//! calls the provider (idempotently, keyed by the order), then records the outcome and the
//! event in one transaction guarded by the inbox. A crash in between only repeats the
//! idempotent call.

use shop_events::{ShopEvent, StockReserved};
use shop_kit::consume::Consumer;
use shop_kit::inbox::{guarded, position, InboxPort, Outcome, Position};
use shop_kit::log::Logger;
use shop_kit::{ApiError, Envelope, Failure, TraceContext};

use crate::domain::{ChargeOutcome, Payment};

/// Where payments, the inbox and the outbox live.
pub trait BillingStore: InboxPort {
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
    async fn charge(
        &self,
        amount_cents: i64,
        token: &str,
        idempotency_key: &str,
    ) -> anyhow::Result<ChargeOutcome>;
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
        match position(self.store.inbox_last(&env.source)?, env.seq) {
            Position::Duplicate => return Ok(Outcome::Duplicate),
            Position::Gap { last } => return Ok(Outcome::Gap { last }),
            Position::Next => {}
        }
        let outcome = if self.current(&e.order_id)?.needs_charge() {
            Some(
                self.provider
                    .charge(e.total_cents, &e.payment_token, &e.idempotency_key)
                    .await?,
            )
        } else {
            None
        };
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
                Ok(())
            })
        })?;
        // The order may have been cancelled while the charge was in flight.
        self.settle_refund(&e.order_id, traceparent).await;
        Ok(applied)
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
    fn last_seq(&self, source: &str) -> anyhow::Result<i64> {
        self.store.inbox_last(source)
    }

    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        self.apply_event(env).await
    }
}
