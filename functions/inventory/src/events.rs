//! Event transport of inventory: inbound messages from `shop.orders` and `shop.billing`,
//! publishing the outbox to `shop.inventory`, and the catch-up sweep.

use shop_kit::relay;
use shop_kit::web::Ctx;

use crate::store::SqlInventory;
use crate::{Service, SERVICE};

/// The sources inventory consumes.
pub const UPSTREAM: &[&str] = &["orders", "billing"];

/// Publishes whatever the outbox holds unpublished.
pub fn publish(ctx: &Ctx, store: &SqlInventory) {
    relay::publish(SERVICE, &store.db, &ctx.log);
}

/// Handles one message of an upstream channel.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    let service = Service::new(SqlInventory::open()?);
    relay::on_message(SERVICE, payload, &service, Some(&service.store.db)).await
}

/// `POST /inventory/sweep`.
pub async fn sweep(ctx: &Ctx) -> anyhow::Result<serde_json::Value> {
    let service = Service::new(SqlInventory::open()?);
    Ok(relay::sweep(ctx, &service, UPSTREAM, Some(&service.store.db)).await)
}
