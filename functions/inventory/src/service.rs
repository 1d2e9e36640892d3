//! Inventory use cases, written against the `InventoryStore` port.

use shop_events::{ShopEvent, StockRejected, StockReserved};
use shop_kit::consume::Consumer;
use shop_kit::consume::ConsumerStore;
use shop_kit::inbox::{guarded, Outcome};
use shop_kit::pending::{announce_parked, Pending};
use shop_kit::{ApiError, Envelope, Failure, TraceContext};

use crate::domain::{reserve, Hold, Product, ProductUpdate, Stock};

/// Where products, holds, the inbox and the outbox live.
/// Everything called inside `transaction` commits or rolls back together.
pub trait InventoryStore: ConsumerStore {
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
    fn store(&self) -> &dyn ConsumerStore {
        &self.store
    }

    /// Tells orders, so that the order's history shows it.
    fn on_parked(&self, p: &Pending) -> anyhow::Result<()> {
        announce_parked(crate::SERVICE, p, |event, tp| self.store.emit(event, tp))
    }

    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        self.apply_event(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_events::{CancelReason, OrderCancelled, OrderCreated, OrderLine, PaymentCaptured};
    use shop_kit::testing::in_stream_0;
    use shop_kit::testing::Fake;
    use std::collections::{BTreeMap, HashMap};

    #[derive(Default, Clone)]
    struct State {
        products: BTreeMap<String, Product>,
        holds: HashMap<String, Hold>,
        outbox: Vec<ShopEvent>,
    }

    type Mem = Fake<State>;

    impl InventoryStore for Mem {
        fn transaction<T, E: From<anyhow::Error>>(
            &self,
            f: impl FnOnce() -> Result<T, E>,
        ) -> Result<T, E> {
            self.rollback_on_error(f)
        }
        fn product(&self, sku: &str) -> anyhow::Result<Option<Product>> {
            Ok(self.state().products.get(sku).cloned())
        }
        fn put_product(&self, p: &Product) -> anyhow::Result<()> {
            self.state_mut().products.insert(p.sku.clone(), p.clone());
            Ok(())
        }
        fn products(&self) -> anyhow::Result<Vec<Product>> {
            Ok(self.state().products.values().cloned().collect())
        }
        fn hold(&self, order_id: &str) -> anyhow::Result<Option<Hold>> {
            Ok(self.state().holds.get(order_id).cloned())
        }
        fn put_hold(&self, hold: &Hold) -> anyhow::Result<()> {
            self.state_mut()
                .holds
                .insert(hold.order_id.clone(), hold.clone());
            Ok(())
        }
        fn emit(&self, event: &ShopEvent, _: &str) -> anyhow::Result<()> {
            self.state_mut().outbox.push(event.clone());
            Ok(())
        }
    }

    fn inventory(stock: i64) -> Inventory<Mem> {
        let inv = Inventory::new(Mem::default());
        let update = ProductUpdate {
            name: "Mug".into(),
            price_cents: 250,
            available: Some(stock),
        };
        assert!(inv.put_product("MUG", update).unwrap().1);
        inv
    }

    fn created(order_id: &str, quantity: u32) -> ShopEvent {
        ShopEvent::OrderCreated(OrderCreated {
            order_id: order_id.into(),
            customer_id: "c1".into(),
            items: vec![OrderLine {
                sku: "MUG".into(),
                quantity,
            }],
            payment_token: "tok_visa".into(),
        })
    }

    fn cancelled(order_id: &str) -> ShopEvent {
        ShopEvent::OrderCancelled(OrderCancelled {
            order_id: order_id.into(),
            customer_id: "c1".into(),
            reason: CancelReason::CancelledByCustomer,
        })
    }

    fn captured(order_id: &str) -> ShopEvent {
        ShopEvent::PaymentCaptured(PaymentCaptured {
            order_id: order_id.into(),
            amount_cents: 500,
            provider_ref: "ch".into(),
        })
    }

    fn apply(inv: &Inventory<Mem>, source: &str, seq: i64, event: ShopEvent) -> Outcome {
        inv.apply_event(&in_stream_0(source, seq, &event)).unwrap()
    }

    fn counts(inv: &Inventory<Mem>) -> (i64, i64) {
        let p = inv.product("MUG").unwrap();
        (p.available, p.reserved)
    }

    #[test]
    fn the_last_units_go_to_the_first_orders_only() {
        let inv = inventory(5);
        let outcomes: Vec<&str> = (1..=20)
            .map(|n| {
                apply(&inv, "orders", n, created(&format!("o{n}"), 1));
                inv.store.state().outbox.last().unwrap().type_name()
            })
            .collect();
        assert_eq!(
            outcomes.iter().filter(|t| **t == "stock-reserved").count(),
            5
        );
        assert_eq!(counts(&inv), (0, 5));
        for n in 1..=5 {
            apply(&inv, "billing", n, captured(&format!("o{n}")));
        }
        assert_eq!(counts(&inv), (0, 0));
    }

    #[test]
    fn a_reservation_is_priced_and_a_repeat_is_ignored() {
        let inv = inventory(5);
        apply(&inv, "orders", 1, created("o1", 2));
        assert_eq!(
            apply(&inv, "orders", 1, created("o1", 2)),
            Outcome::Duplicate
        );
        let state = inv.store.state();
        let ShopEvent::StockReserved(e) = &state.outbox[0] else {
            panic!("expected stock-reserved")
        };
        assert_eq!((e.total_cents, e.idempotency_key.as_str()), (500, "o1"));
        drop(state);
        assert_eq!(counts(&inv), (3, 2));
    }

    #[test]
    fn cancellation_releases_reserved_and_even_sold_units() {
        let inv = inventory(5);
        apply(&inv, "orders", 1, created("o1", 2));
        apply(&inv, "orders", 2, cancelled("o1"));
        assert_eq!(counts(&inv), (5, 0));
        apply(&inv, "billing", 1, captured("o1"));
        assert_eq!(
            counts(&inv),
            (5, 0),
            "a capture after the release sells nothing"
        );

        apply(&inv, "orders", 3, created("o2", 2));
        apply(&inv, "billing", 2, captured("o2"));
        assert_eq!(counts(&inv), (3, 0));
        apply(&inv, "orders", 4, cancelled("o2"));
        assert_eq!(counts(&inv), (5, 0));
    }

    #[test]
    fn an_unknown_sku_is_rejected_without_holding_anything() {
        let inv = inventory(5);
        let order = ShopEvent::OrderCreated(OrderCreated {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            items: vec![
                OrderLine {
                    sku: "MUG".into(),
                    quantity: 1,
                },
                OrderLine {
                    sku: "NOPE".into(),
                    quantity: 1,
                },
            ],
            payment_token: "t".into(),
        });
        apply(&inv, "orders", 1, order);
        assert_eq!(inv.store.state().outbox[0].type_name(), "stock-rejected");
        assert_eq!(counts(&inv), (5, 0));
    }
}
