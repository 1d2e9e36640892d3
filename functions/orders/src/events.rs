//! Event transport of orders: messages of the `shop.*` channels it subscribes to. HTTP
//! deliveries, the sweep and publishing are `shop_kit::component`'s; who feeds orders is
//! `shop_kit::subscriptions` (inventory and billing).

use shop_kit::relay;

use crate::store::SqlOrders;
use crate::{Service, SERVICE};

/// Handles one message of an upstream channel.
pub async fn on_message(payload: &[u8]) -> anyhow::Result<()> {
    relay::on_message(SERVICE, payload, |_| Ok(Service::new(SqlOrders::open()?))).await
}
