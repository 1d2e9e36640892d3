//! The orders component: places orders and follows them through the saga.

pub mod domain;
pub mod events;
pub mod http;
pub mod service;
pub mod store;

pub const SERVICE: &str = "orders";

pub type Service = service::Orders<store::SqlOrders>;

/// The component's exports. Only built for Wasm: natively the crate is a library whose
/// domain and service are unit-tested.
#[cfg(target_arch = "wasm32")]
mod exports {
    use spin_sdk::http::{Request, ResponseOutparam};

    #[spin_sdk::http_component]
    async fn handle_http(req: Request, out: ResponseOutparam) {
        shop_kit::component::serve_consumer::<super::http::Http>(req, out).await
    }

    #[spin_sdk::redis_component]
    async fn handle_message(payload: Vec<u8>) -> anyhow::Result<()> {
        super::events::on_message(&payload).await
    }
}
