//! Event transport of inventory: applying upstream events (Redis messages or HTTP deliveries),
//! publishing the outbox, and the catch-up sweep. Who feeds inventory is `shop_kit::subscriptions`.

use shop_kit::web::Ctx;
use shop_kit::{push, relay, Failure};
use spin_sdk::http::{Request, Response};

use crate::store::SqlInventory;
use crate::{Service, SERVICE};

fn service() -> anyhow::Result<Service> {
    Ok(Service::new(SqlInventory::open()?))
}

/// Publishes whatever the outbox holds unpublished.
pub async fn publish(ctx: &Ctx) -> anyhow::Result<()> {
    relay::publish(SERVICE, &SqlInventory::open()?.db, &ctx.log).await;
    Ok(())
}

/// Handles one message of an upstream channel.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    let service = service()?;
    relay::on_message(SERVICE, payload, &service, Some(&service.store.db)).await
}

/// `POST /inventory/events/deliveries`: one upstream event pushed over HTTP.
pub async fn receive(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    push::receive(ctx, req, &service()?).await
}

/// `POST /inventory/sweep`.
pub async fn sweep(ctx: &Ctx) -> anyhow::Result<serde_json::Value> {
    let service = service()?;
    Ok(relay::sweep(ctx, &service, Some(&service.store.db)).await)
}
