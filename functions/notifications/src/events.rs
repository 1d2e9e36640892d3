//! Event transport of notifications: applying `orders` events (Redis messages or HTTP
//! deliveries) and the catch-up sweep (which also retries undelivered notifications).
//! Notifications publish no events.

use shop_kit::web::Ctx;
use shop_kit::{push, relay, Envelope, Failure, TraceContext};
use spin_sdk::http::{Request, Response};

use crate::{open, SERVICE};

/// Handles one message of `shop.orders`.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    let trace = Envelope::from_bytes(payload)
        .map(|env| TraceContext::from_header(Some(&env.traceparent)))
        .unwrap_or_else(|_| TraceContext::new_root());
    let service = open(&trace)?;
    relay::on_message(SERVICE, payload, &service, None).await
}

/// `POST /notifications/events/deliveries`: one `orders` event pushed over HTTP.
pub async fn receive(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    push::receive(ctx, req, &open(&ctx.trace)?).await
}

/// `POST /notifications/sweep`.
pub async fn sweep(ctx: &Ctx) -> anyhow::Result<serde_json::Value> {
    let service = open(&ctx.trace)?;
    let mut report = relay::sweep(ctx, &service, None).await;
    report["redelivered"] = match service.redeliver().await {
        Ok(n) => n.into(),
        Err(e) => format!("{e:#}").into(),
    };
    Ok(report)
}
