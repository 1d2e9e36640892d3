//! Event transport of billing: inbound messages from `shop.inventory` and `shop.orders`,
//! publishing the outbox to `shop.billing`, and the catch-up sweep (which also settles
//! refunds that could not be made at the time).

use shop_kit::web::Ctx;
use shop_kit::{relay, Envelope, TraceContext};

use crate::{open, SERVICE};

/// The sources billing consumes.
pub const UPSTREAM: &[&str] = &["inventory", "orders"];

/// Handles one message of an upstream channel.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    let trace = Envelope::from_bytes(payload)
        .map(|env| TraceContext::from_header(Some(&env.traceparent)))
        .unwrap_or_else(|_| TraceContext::new_root());
    let service = open(&trace)?;
    relay::on_message(SERVICE, payload, &service, Some(&service.store.db)).await
}

/// `POST /billing/sweep`.
pub async fn sweep(ctx: &Ctx) -> anyhow::Result<serde_json::Value> {
    let service = open(&ctx.trace)?;
    let mut report = relay::sweep(ctx, &service, UPSTREAM, None).await;
    report["refunds"] = match service.settle_owed_refunds(&ctx.trace).await {
        Ok(n) => serde_json::json!({"settled": n}),
        Err(e) => serde_json::json!({"error": format!("{e:#}")}),
    };
    report["published"] = relay::publish(SERVICE, &service.store.db, &ctx.log).into();
    Ok(report)
}
