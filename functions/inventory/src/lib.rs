//! The inventory component: products, stock and reservations.

pub mod domain;
pub mod events;
pub mod http;
pub mod service;
pub mod store;

pub const SERVICE: &str = "inventory";

pub type Service = service::Inventory<store::SqlInventory>;

/// The component's exports. Only built for Wasm: natively the crate is a library whose
/// domain and service are unit-tested.
#[cfg(target_arch = "wasm32")]
mod exports {
    #[spin_sdk::http_component]
    async fn handle_http(req: spin_sdk::http::Request) -> spin_sdk::http::Response {
        super::http::handle(req).await
    }

    #[spin_sdk::redis_component]
    async fn handle_message(payload: Vec<u8>) -> anyhow::Result<()> {
        super::events::on_message(&payload).await
    }
}
