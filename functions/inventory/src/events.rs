//! Event transport of inventory: messages of the `shop.*` channels it subscribes to. HTTP
//! deliveries, the sweep and publishing are `shop_kit::component`'s; who feeds inventory is
//! `shop_kit::subscriptions` (orders and billing).

use shop_kit::relay;

use crate::store::SqlInventory;
use crate::{Service, SERVICE};

/// Handles one message of an upstream channel.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    relay::on_message(SERVICE, payload, |_| {
        Ok(Service::new(SqlInventory::open()?))
    })
    .await
}
