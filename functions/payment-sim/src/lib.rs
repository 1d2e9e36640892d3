//! The payment-sim component: a stand-in payment provider with switchable faults, reached by
//! billing through `payment_provider_url` like any external provider.

pub mod domain;
pub mod http;
pub mod service;
pub mod store;

pub const SERVICE: &str = "payment-sim";

pub type Service = service::Provider<store::KvProvider>;

/// The component's export. Only built for Wasm: natively the crate is a library whose
/// domain and service are unit-tested.
#[cfg(target_arch = "wasm32")]
mod exports {
    use spin_sdk::http::{Request, ResponseOutparam};

    #[spin_sdk::http_component]
    async fn handle_http(req: Request, out: ResponseOutparam) {
        shop_kit::component::serve::<super::http::Http>(req, out).await
    }
}
