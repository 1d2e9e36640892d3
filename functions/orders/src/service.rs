//! Orders use cases, written against the `OrderStore` port.

use shop_events::ShopEvent;
use shop_kit::consume::{Consumer, ConsumerStore};
use shop_kit::inbox::{guarded, Outcome};
use shop_kit::pending::Pending;
use shop_kit::{ApiError, Envelope, Failure, TraceContext};

use crate::domain::{NewOrder, Order, Status};

/// Largest page of `GET /orders`.
pub const MAX_PAGE: usize = 100;

/// Filters and cursor of `GET /orders`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub customer_id: Option<String>,
    pub status: Option<Status>,
    /// Orders strictly older than this id (ids are time-ordered UUIDv7).
    pub cursor: Option<String>,
    pub limit: usize,
}

/// Where orders, idempotency keys, the inbox and the outbox live.
/// Everything called inside `transaction` commits or rolls back together.
pub trait OrderStore: ConsumerStore {
    fn transaction<T, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>;
    fn get(&self, id: &str) -> anyhow::Result<Option<Order>>;
    fn insert(&self, order: &Order) -> anyhow::Result<()>;
    fn update(&self, order: &Order) -> anyhow::Result<()>;
    /// Newest first.
    fn list(&self, query: &ListQuery) -> anyhow::Result<Vec<Order>>;
    /// The canonical request and order an idempotency key was first used for.
    fn idempotency_key(&self, key: &str) -> anyhow::Result<Option<(String, String)>>;
    fn remember_key(&self, key: &str, request: &str, order_id: &str) -> anyhow::Result<()>;
    /// Appends an event to the outbox.
    fn emit(&self, event: &ShopEvent, traceparent: &str) -> anyhow::Result<()>;
}

/// Whether `place` created the order or replayed an earlier request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Created,
    Replayed,
}

pub struct Orders<S> {
    pub store: S,
}

fn now() -> String {
    shop_kit::time::now_rfc3339()
}

impl<S: OrderStore> Orders<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// Places an order; with an idempotency key, a repeated request returns the first order
    /// and a different request under the same key is a conflict.
    pub fn place(
        &self,
        new: NewOrder,
        idempotency_key: Option<&str>,
        trace: &TraceContext,
    ) -> Result<(Order, Placed), Failure> {
        let request = new.canonical();
        self.store.transaction(|| {
            if let Some(key) = idempotency_key {
                if let Some((first_request, order_id)) = self.store.idempotency_key(key)? {
                    if first_request != request {
                        return Err(ApiError::conflict(
                            "Idempotency-Key was already used with a different request",
                        )
                        .into());
                    }
                    let order = self.store.get(&order_id)?.ok_or_else(|| {
                        anyhow::anyhow!("idempotency key points at missing order {order_id}")
                    })?;
                    return Ok((order, Placed::Replayed));
                }
            }
            let id = uuid::Uuid::now_v7().to_string();
            let (order, event) = Order::place(id, new, &now());
            self.store.insert(&order)?;
            if let Some(key) = idempotency_key {
                self.store.remember_key(key, &request, &order.id)?;
            }
            self.store.emit(&event, &trace.child().header())?;
            Ok((order, Placed::Created))
        })
    }

    pub fn get(&self, id: &str) -> Result<Order, Failure> {
        self.store
            .get(id)?
            .ok_or_else(|| ApiError::not_found(format!("order {id} not found")).into())
    }

    /// A page of orders and the cursor of the next page, if there may be one.
    pub fn list(&self, query: &ListQuery) -> Result<(Vec<Order>, Option<String>), Failure> {
        let orders = self.store.list(query)?;
        let next = (orders.len() == query.limit)
            .then(|| orders.last().map(|o| o.id.clone()))
            .flatten();
        Ok((orders, next))
    }

    /// The customer cancels an order that is not yet final.
    pub fn cancel(&self, id: &str, trace: &TraceContext) -> Result<Order, Failure> {
        self.store.transaction(|| {
            let mut order = self.get(id)?;
            let event = order.cancel_by_customer(&now())?;
            self.store.update(&order)?;
            self.store.emit(&event, &trace.child().header())?;
            Ok(order)
        })
    }

    /// Applies one upstream event to its order, in the transaction that records it applied.
    fn apply_event(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        let event = env.event()?;
        let traceparent = TraceContext::from_header(Some(&env.traceparent))
            .child()
            .header();
        self.store.transaction(|| {
            guarded(&self.store, env, |store| {
                let Some(order_id) = order_of(&event) else {
                    return Ok(());
                };
                // Orders writes an order before announcing it, so an event about an order it
                // does not have can never become applicable: skip it rather than block the
                // source behind it forever.
                let Some(mut order) = store.get(order_id)? else {
                    return Ok(());
                };
                let now = now();
                let follow_up = match &event {
                    ShopEvent::StockReserved(e) => {
                        order.stock_reserved(&e.lines, e.total_cents, &now);
                        None
                    }
                    ShopEvent::StockRejected(_) => order.stock_rejected(&now),
                    ShopEvent::PaymentCaptured(e) => order.payment_captured(e.amount_cents, &now),
                    ShopEvent::PaymentDeclined(e) => order.payment_declined(&e.reason, &now),
                    ShopEvent::EventParked(e) => {
                        order.event_parked(
                            format!(
                                "{} parked {} {}: {}",
                                e.consumer, e.event_type, e.event_id, e.error
                            ),
                            &now,
                        );
                        None
                    }
                    _ => return Ok(()),
                };
                store.update(&order)?;
                if let Some(follow_up) = follow_up {
                    store.emit(&follow_up, &traceparent)?;
                }
                Ok(())
            })
        })
    }
}

/// The order an event is about, for the events orders reacts to.
fn order_of(event: &ShopEvent) -> Option<&str> {
    match event {
        ShopEvent::StockReserved(e) => Some(&e.order_id),
        ShopEvent::StockRejected(e) => Some(&e.order_id),
        ShopEvent::PaymentCaptured(e) => Some(&e.order_id),
        ShopEvent::PaymentDeclined(e) => Some(&e.order_id),
        ShopEvent::EventParked(e) => Some(&e.order_id),
        _ => None,
    }
}

impl<S: OrderStore> Consumer for Orders<S> {
    fn store(&self) -> &dyn ConsumerStore {
        &self.store
    }

    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        self.apply_event(env)
    }

    /// Orders parks an event about one of its orders: the order's history says so.
    fn on_parked(&self, p: &Pending) -> anyhow::Result<()> {
        let Some(mut order) = self.store.get(p.env.order_id())? else {
            return Ok(());
        };
        order.event_parked(
            format!(
                "orders parked {} {}: {}",
                p.env.type_name, p.env.id, p.error
            ),
            &now(),
        );
        self.store.update(&order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shop_events::{PaymentCaptured, PaymentDeclined, PricedLine, StockRejected, StockReserved};
    use shop_kit::testing::in_stream_0;
    use shop_kit::testing::Fake;
    use std::collections::{BTreeMap, HashMap};

    #[derive(Default, Clone)]
    struct State {
        orders: BTreeMap<String, Order>,
        keys: HashMap<String, (String, String)>,
        outbox: Vec<ShopEvent>,
    }

    type Mem = Fake<State>;

    impl OrderStore for Mem {
        fn transaction<T, E: From<anyhow::Error>>(
            &self,
            f: impl FnOnce() -> Result<T, E>,
        ) -> Result<T, E> {
            self.rollback_on_error(f)
        }
        fn get(&self, id: &str) -> anyhow::Result<Option<Order>> {
            Ok(self.state().orders.get(id).cloned())
        }
        fn insert(&self, order: &Order) -> anyhow::Result<()> {
            self.state_mut()
                .orders
                .insert(order.id.clone(), order.clone());
            Ok(())
        }
        fn update(&self, order: &Order) -> anyhow::Result<()> {
            self.insert(order)
        }
        fn list(&self, q: &ListQuery) -> anyhow::Result<Vec<Order>> {
            Ok(self
                .state()
                .orders
                .values()
                .rev()
                .filter(|o| q.customer_id.as_ref().is_none_or(|c| &o.customer_id == c))
                .filter(|o| q.status.is_none_or(|s| o.status == s))
                .filter(|o| q.cursor.as_ref().is_none_or(|c| &o.id < c))
                .take(q.limit)
                .cloned()
                .collect())
        }
        fn idempotency_key(&self, key: &str) -> anyhow::Result<Option<(String, String)>> {
            Ok(self.state().keys.get(key).cloned())
        }
        fn remember_key(&self, key: &str, request: &str, order_id: &str) -> anyhow::Result<()> {
            self.state_mut()
                .keys
                .insert(key.into(), (request.into(), order_id.into()));
            Ok(())
        }
        fn emit(&self, event: &ShopEvent, _: &str) -> anyhow::Result<()> {
            self.state_mut().outbox.push(event.clone());
            Ok(())
        }
    }

    fn new_order(customer: &str, quantity: u32) -> NewOrder {
        NewOrder::parse(
            json!({"customer_id": customer, "items": [{"sku": "A", "quantity": quantity}], "payment_token": "tok_visa"})
                .as_object()
                .unwrap(),
        )
        .unwrap()
    }

    fn orders() -> Orders<Mem> {
        Orders::new(Mem::default())
    }

    fn place(o: &Orders<Mem>) -> Order {
        o.place(new_order("c1", 2), None, &TraceContext::new_root())
            .unwrap()
            .0
    }

    fn types(o: &Orders<Mem>) -> Vec<&'static str> {
        o.store
            .state()
            .outbox
            .iter()
            .map(|e| e.type_name())
            .collect()
    }

    fn apply(o: &Orders<Mem>, source: &str, seq: i64, event: ShopEvent) -> Outcome {
        o.apply_event(&in_stream_0(source, seq, &event)).unwrap()
    }

    fn reserved(order_id: &str) -> ShopEvent {
        ShopEvent::StockReserved(StockReserved {
            order_id: order_id.into(),
            customer_id: "c1".into(),
            lines: vec![PricedLine {
                sku: "A".into(),
                quantity: 2,
                unit_price_cents: 150,
            }],
            total_cents: 300,
            payment_token: "tok_visa".into(),
            idempotency_key: order_id.into(),
        })
    }

    fn captured(order_id: &str) -> ShopEvent {
        ShopEvent::PaymentCaptured(PaymentCaptured {
            order_id: order_id.into(),
            amount_cents: 300,
            provider_ref: "ch".into(),
        })
    }

    #[test]
    fn placing_an_order_announces_it() {
        let o = orders();
        let order = place(&o);
        assert_eq!(order.status, Status::Pending);
        assert_eq!(types(&o), vec!["order-created"]);
    }

    #[test]
    fn an_idempotency_key_replays_or_conflicts() {
        let o = orders();
        let trace = TraceContext::new_root();
        let (first, placed) = o.place(new_order("c1", 2), Some("k1"), &trace).unwrap();
        assert_eq!(placed, Placed::Created);
        let (again, placed) = o.place(new_order("c1", 2), Some("k1"), &trace).unwrap();
        assert_eq!(
            (again.id.as_str(), placed),
            (first.id.as_str(), Placed::Replayed)
        );
        let err = o.place(new_order("c1", 3), Some("k1"), &trace).unwrap_err();
        assert!(matches!(err, Failure::Api(e) if e.code.status() == 409));
        assert_eq!(o.store.state().orders.len(), 1);
        assert_eq!(types(&o), vec!["order-created"]);
    }

    #[test]
    fn the_saga_confirms_an_order_once() {
        let o = orders();
        let id = place(&o).id;
        assert_eq!(apply(&o, "inventory", 1, reserved(&id)), Outcome::Applied);
        assert_eq!(o.get(&id).unwrap().total_cents, Some(300));
        assert_eq!(apply(&o, "billing", 1, captured(&id)), Outcome::Applied);
        assert_eq!(apply(&o, "billing", 1, captured(&id)), Outcome::Duplicate);
        assert_eq!(o.get(&id).unwrap().status, Status::Confirmed);
        assert_eq!(types(&o), vec!["order-created", "order-confirmed"]);
        assert!(
            matches!(o.cancel(&id, &TraceContext::new_root()), Err(Failure::Api(e)) if e.code.status() == 409)
        );
    }

    #[test]
    fn rejections_and_declines_cancel_with_a_reason() {
        let o = orders();
        let a = place(&o).id;
        let b = place(&o).id;
        let rejected = ShopEvent::StockRejected(StockRejected {
            order_id: a.clone(),
            sku: "A".into(),
            reason: "insufficient_stock".into(),
        });
        apply(&o, "inventory", 1, rejected);
        apply(&o, "inventory", 2, reserved(&b));
        let declined = ShopEvent::PaymentDeclined(PaymentDeclined {
            order_id: b.clone(),
            amount_cents: 300,
            reason: "card_declined".into(),
        });
        apply(&o, "billing", 1, declined);
        assert_eq!(
            o.get(&a).unwrap().cancel_reason.as_deref(),
            Some("out_of_stock")
        );
        assert_eq!(
            o.get(&b).unwrap().cancel_reason.as_deref(),
            Some("payment_declined")
        );
        assert_eq!(
            types(&o),
            vec![
                "order-created",
                "order-created",
                "order-cancelled",
                "order-cancelled"
            ]
        );
    }

    #[test]
    fn a_gap_changes_nothing_and_an_unknown_order_is_skipped() {
        let o = orders();
        let id = place(&o).id;
        assert_eq!(
            apply(&o, "inventory", 2, reserved(&id)),
            Outcome::Gap { last: 0 }
        );
        assert_eq!(o.get(&id).unwrap().status, Status::Pending);
        // An event of the same stream about an order orders never had fills the gap.
        let missing = uuid::Uuid::now_v7().to_string();
        assert_eq!(
            apply(&o, "inventory", 1, reserved(&missing)),
            Outcome::Applied
        );
        assert_eq!(o.store.last_seq("inventory", 0), 1);
        assert_eq!(apply(&o, "inventory", 2, reserved(&id)), Outcome::Applied);
        assert_eq!(o.get(&id).unwrap().status, Status::Reserved);
    }

    #[test]
    fn a_customer_cancel_is_announced_and_a_late_capture_ignored() {
        let o = orders();
        let id = place(&o).id;
        let order = o.cancel(&id, &TraceContext::new_root()).unwrap();
        assert_eq!(
            order.cancel_reason.as_deref(),
            Some("cancelled_by_customer")
        );
        apply(&o, "billing", 1, captured(&id));
        assert_eq!(o.get(&id).unwrap().status, Status::Cancelled);
        assert_eq!(types(&o), vec!["order-created", "order-cancelled"]);
    }

    #[test]
    fn lists_page_newest_first_with_a_cursor() {
        let o = orders();
        let ids: Vec<String> = (0..5).map(|_| place(&o).id).collect();
        let mut q = ListQuery {
            limit: 2,
            ..ListQuery::default()
        };
        let (page, next) = o.list(&q).unwrap();
        assert_eq!(
            page.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
            vec![ids[4].clone(), ids[3].clone()]
        );
        q.cursor = next;
        let (page, _) = o.list(&q).unwrap();
        assert_eq!(page[0].id, ids[2]);
        q.cursor = Some(ids[0].clone());
        let (page, next) = o.list(&q).unwrap();
        assert!(page.is_empty() && next.is_none());
    }
}
