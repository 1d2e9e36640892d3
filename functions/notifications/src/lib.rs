//! The notifications component: records one notification per final order state and delivers
//! it to a webhook, behind a circuit breaker.

pub mod domain;
pub mod events;
pub mod http;
pub mod index;
pub mod service;
pub mod store;
pub mod webhook;

pub const SERVICE: &str = "notifications";

/// The webhook's breaker, as `GET /notifications/breakers` names it (stored under `breaker`).
pub const WEBHOOK_BREAKER: &str = "webhook";

pub type Service = service::Notifications<store::KvNotifications, webhook::HttpWebhook>;

/// Opens notifications against its store and the configured webhook, within `trace`.
pub fn open(trace: &shop_kit::TraceContext) -> anyhow::Result<Service> {
    use shop_kit::config::var_or;
    Ok(service::Notifications {
        store: store::KvNotifications::open()?,
        webhook: webhook::HttpWebhook {
            url: var_or("notification_webhook_url", ""),
            traceparent: trace.child().header(),
        },
        policy: shop_kit::breaker::Policy::from_variables(),
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
