//! Event transport of notifications: messages of `shop.orders`. HTTP deliveries and the sweep
//! are `shop_kit::component`'s. Notifications publish no events.

use shop_kit::{relay, Envelope, TraceContext};

use crate::{open, SERVICE};

/// Handles one message of `shop.orders`.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    let trace = Envelope::from_bytes(payload)
        .map(|env| TraceContext::from_header(Some(&env.traceparent)))
        .unwrap_or_else(|_| TraceContext::new_root());
    let service = open(&trace)?;
    relay::on_message(SERVICE, payload, &service).await
}
