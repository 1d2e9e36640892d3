//! The billing component: charges reserved orders through the payment provider and refunds
//! the captured payments of cancelled orders.

pub mod domain;
pub mod events;
pub mod http;
pub mod provider;
pub mod service;
pub mod store;

pub const SERVICE: &str = "billing";

pub type Service = service::Billing<store::SqlBilling, provider::HttpProvider>;

/// The payment provider's breaker: its name in `GET /billing/breakers`, and its key in
/// billing's key-value store.
pub const PROVIDER_BREAKER: &str = "payment_provider";

/// Opens the payment provider's breaker (shared by every instance, in the store `billing`).
pub fn provider_breaker() -> anyhow::Result<shop_kit::breaker::KvBreaker> {
    shop_kit::breaker::KvBreaker::open("billing", &format!("breaker:{PROVIDER_BREAKER}"))
}

/// Opens billing against its database and the configured provider, within `trace`.
pub fn open(trace: &shop_kit::TraceContext) -> anyhow::Result<Service> {
    Ok(service::Billing {
        store: store::SqlBilling::open()?,
        provider: provider::HttpProvider {
            base_url: shop_kit::config::var_or(
                "payment_provider_url",
                "http://127.0.0.1:3000/payment-sim",
            ),
            api_key: shop_kit::config::var_or("payment_provider_key", ""),
            traceparent: trace.child().header(),
            breaker: provider_breaker()?,
        },
        log: shop_kit::log::Logger::new(SERVICE, &trace.trace_id),
    })
}

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
