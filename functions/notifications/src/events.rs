//! Event transport of notifications: messages of `shop.orders`. HTTP deliveries and the sweep
//! are `shop_kit::component`'s. Notifications publish no events.

use shop_kit::relay;

use crate::{open, SERVICE};

/// Handles one message of `shop.orders`.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    relay::on_message(SERVICE, payload, open).await
}
