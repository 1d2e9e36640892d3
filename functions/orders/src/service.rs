//! Orders use cases, written against the `OrderStore` port.

use shop_events::ShopEvent;
use shop_kit::consume::Consumer;
use shop_kit::inbox::{guarded, InboxPort, Outcome};
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
pub trait OrderStore: InboxPort {
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
                let Some(mut order) = store.get(order_id)? else {
                    anyhow::bail!("{} for unknown order {order_id}", env.type_name);
                };
                let now = now();
                let follow_up = match &event {
                    ShopEvent::StockReserved(e) => {
                        order.stock_reserved(&e.lines, e.total_cents, &now);
                        None
                    }
                    ShopEvent::StockRejected(_) => order.stock_rejected(&now),
                    ShopEvent::PaymentCaptured(e) => order.payment_captured(e.amount_cents, &now),
                    ShopEvent::PaymentDeclined(_) => order.payment_declined(&now),
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
        _ => None,
    }
}

impl<S: OrderStore> Consumer for Orders<S> {
    fn last_seq(&self, source: &str) -> anyhow::Result<i64> {
        self.store.inbox_last(source)
    }

    async fn apply(&self, env: &Envelope) -> anyhow::Result<Outcome> {
        self.apply_event(env)
    }
}
