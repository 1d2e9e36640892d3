//! Event transport of billing: messages of the `shop.*` channels it subscribes to
//! (`shop_kit::subscriptions`: inventory and orders). HTTP deliveries, the sweep and
//! publishing are `shop_kit::component`'s.

use shop_kit::relay;

use crate::{open, SERVICE};

/// Handles one message of an upstream channel.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    relay::on_message(SERVICE, payload, open).await
}
