//! Event transport of billing: applying upstream events (Redis messages or HTTP deliveries),
//! publishing the outbox, and the catch-up sweep (which also settles refunds that could not
//! be made at the time). Who feeds billing is `shop_kit::subscriptions`.

use shop_kit::web::Ctx;
use shop_kit::{push, relay, Envelope, Failure, TraceContext};
use spin_sdk::http::{Request, Response};

use crate::{open, store::SqlBilling, SERVICE};

/// Publishes whatever the outbox holds unpublished.
pub async fn publish(ctx: &Ctx) -> anyhow::Result<()> {
    relay::publish(SERVICE, &SqlBilling::open()?.db, &ctx.log).await;
    Ok(())
}

/// Handles one message of an upstream channel.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    let trace = Envelope::from_bytes(payload)
        .map(|env| TraceContext::from_header(Some(&env.traceparent)))
        .unwrap_or_else(|_| TraceContext::new_root());
    let service = open(&trace)?;
    relay::on_message(SERVICE, payload, &service, Some(&service.store.db)).await
}

/// `POST /billing/events/deliveries`: one upstream event pushed over HTTP.
pub async fn receive(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    push::receive(ctx, req, &open(&ctx.trace)?).await
}

/// `POST /billing/sweep`.
pub async fn sweep(ctx: &Ctx) -> anyhow::Result<serde_json::Value> {
    let service = open(&ctx.trace)?;
    let mut report = relay::sweep(ctx, &service, None).await;
    report["refunds"] = match service.settle_owed_refunds(&ctx.trace).await {
        Ok(n) => serde_json::json!({"settled": n}),
        Err(e) => serde_json::json!({"error": format!("{e:#}")}),
    };
    report["published"] = relay::publish(SERVICE, &service.store.db, &ctx.log)
        .await
        .into();
    Ok(report)
}
