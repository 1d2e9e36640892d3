//! Event transport of billing: messages of the `shop.*` channels it subscribes to
//! (`shop_kit::subscriptions`: inventory and orders). HTTP deliveries, the sweep and
//! publishing are `shop_kit::component`'s.

use shop_kit::{relay, Envelope, TraceContext};

use crate::{open, SERVICE};

/// Handles one message of an upstream channel.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    let trace = Envelope::from_bytes(payload)
        .map(|env| TraceContext::from_header(Some(&env.traceparent)))
        .unwrap_or_else(|_| TraceContext::new_root());
    let service = open(&trace)?;
    relay::on_message(SERVICE, payload, &service).await
}
