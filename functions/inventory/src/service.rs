//! Inventory use cases, written against the `InventoryStore` port.

use shop_events::{ShopEvent, StockRejected, StockReserved};
use shop_kit::consume::Consumer;
use shop_kit::inbox::{guarded, InboxPort, Outcome};
use shop_kit::{ApiError, Envelope, Failure, TraceContext};

use crate::domain::{reserve, Hold, Product, ProductUpdate, Stock};

/// Where products, holds, the inbox and the outbox live.
/// Everything called inside `transaction` commits or rolls back together.
pub trait InventoryStore: InboxPort {
    fn transaction<T, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>;
    fn product(&self, sku: &str) -> anyhow::Result<Option<Product>>;
    fn put_product(&self, product: &Product) -> anyhow::Result<()>;
    /// Every product, by SKU.
    fn products(&self) -> anyhow::Result<Vec<Product>>;
    fn hold(&self, order_id: &str) -> anyhow::Result<Option<Hold>>;
    fn put_hold(&self, hold: &Hold) -> anyhow::Result<()>;
    fn emit(&self, event: &ShopEvent, traceparent: &str) -> anyhow::Result<()>;
}

pub struct Inventory<S> {
    pub store: S,
}

impl<S: InventoryStore> Inventory<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    pub fn product(&self, sku: &str) -> Result<Product, Failure> {
        self.store
            .product(sku)?
            .ok_or_else(|| ApiError::not_found(format!("product {sku} not found")).into())
    }

    pub fn products(&self) -> Result<Vec<Product>, Failure> {
        Ok(self.store.products()?)
    }

    /// Creates or updates a product; returns it and whether it was created.
    pub fn put_product(
        &self,
        sku: &str,
        update: ProductUpdate,
    ) -> Result<(Product, bool), Failure> {
        self.store.transaction(|| {
            let current = self.store.product(sku)?;
            let created = current.is_none();
            let product = update.apply(sku, current);
            self.store.put_product(&product)?;
            Ok((product, created))
        })
    }

    fn load(&self, skus: impl Iterator<Item = String>) -> anyhow::Result<Stock> {
        let mut stock = Stock::new();
        for sku in skus {
            if let Some(p) = self.store.product(&sku)? {
                stock.insert(sku, p);
            }
        }
        Ok(stock)
    }

    fn save(&self, stock: &Stock) -> anyhow::Result<()> {
        stock.values().try_for_each(|p| self.store.put_product(p))
    }

    fn apply_event(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        let event = env.event()?;
        let traceparent = TraceContext::from_header(Some(&env.traceparent))
            .child()
            .header();
        self.store.transaction(|| {
            guarded(&self.store, env, |store| match &event {
                ShopEvent::OrderCreated(e) => {
                    if store.hold(&e.order_id)?.is_some() {
                        return Ok(());
                    }
                    let mut stock = self.load(e.items.iter().map(|i| i.sku.clone()))?;
                    match reserve(&e.order_id, &e.items, &mut stock) {
                        Ok((hold, total_cents)) => {
                            self.save(&stock)?;
                            store.put_hold(&hold)?;
                            let reserved = StockReserved {
                                order_id: e.order_id.clone(),
                                customer_id: e.customer_id.clone(),
                                lines: hold.lines.clone(),
                                total_cents,
                                payment_token: e.payment_token.clone(),
                                idempotency_key: e.order_id.clone(),
                            };
                            store.emit(&ShopEvent::StockReserved(reserved), &traceparent)
                        }
                        Err(rejection) => {
                            store.put_hold(&Hold::rejected(&e.order_id))?;
                            let rejected = StockRejected {
                                order_id: e.order_id.clone(),
                                sku: rejection.sku,
                                reason: rejection.reason.to_string(),
                            };
                            store.emit(&ShopEvent::StockRejected(rejected), &traceparent)
                        }
                    }
                }
                ShopEvent::PaymentCaptured(e) => self.change_hold(&e.order_id, Hold::sell),
                ShopEvent::PaymentDeclined(e) => self.change_hold(&e.order_id, Hold::release),
                ShopEvent::OrderCancelled(e) => self.change_hold(&e.order_id, Hold::release),
                _ => Ok(()),
            })
        })
    }

    /// Sells or releases an order's hold, whatever order the events came in.
    fn change_hold(
        &self,
        order_id: &str,
        change: fn(&mut Hold, &mut Stock) -> bool,
    ) -> anyhow::Result<()> {
        let Some(mut hold) = self.store.hold(order_id)? else {
            // Cancelled before the reservation was even attempted: remember, hold nothing.
            return self
                .store
                .put_hold(&Hold::released_before_reservation(order_id));
        };
        let mut stock = self.load(hold.lines.iter().map(|l| l.sku.clone()))?;
        if change(&mut hold, &mut stock) {
            self.save(&stock)?;
            self.store.put_hold(&hold)?;
        }
        Ok(())
    }
}

impl<S: InventoryStore> Consumer for Inventory<S> {
    fn last_seq(&self, source: &str) -> anyhow::Result<i64> {
        self.store.inbox_last(source)
    }

    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        self.apply_event(env)
    }
}
