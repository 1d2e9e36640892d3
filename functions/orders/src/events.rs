//! Event transport of orders: inbound messages from `shop.inventory` and `shop.billing`,
//! publishing the outbox to `shop.orders`, and the catch-up sweep.

use shop_kit::relay;
use shop_kit::web::Ctx;

use crate::store::SqlOrders;
use crate::{Service, SERVICE};

/// The sources orders consumes.
pub const UPSTREAM: &[&str] = &["inventory", "billing"];

/// Publishes whatever the outbox holds unpublished.
pub fn publish(ctx: &Ctx, store: &SqlOrders) {
    relay::publish(SERVICE, &store.db, &ctx.log);
}

/// Handles one message of an upstream channel.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    let service = Service::new(SqlOrders::open()?);
    relay::on_message(SERVICE, payload, &service, Some(&service.store.db)).await
}

/// `POST /orders/sweep`.
pub async fn sweep(ctx: &Ctx) -> anyhow::Result<serde_json::Value> {
    let service = Service::new(SqlOrders::open()?);
    Ok(relay::sweep(ctx, &service, UPSTREAM, Some(&service.store.db)).await)
}
