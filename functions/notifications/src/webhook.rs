//! HTTP adapter of the `Webhook` port: POSTs the notification to `notification_webhook_url`,
//! giving up after `webhook_timeout_ms` (a failure like any other: the breaker counts it and
//! the sweep retries). Delivery is at least once (a retry after a lost answer, or two replicas
//! applying the same event at once), so each call carries the notification's id as its
//! `Idempotency-Key`, by which a receiver drops a repeat.

use spin_sdk::http::Request;

use crate::domain::Notification;
use crate::service::Webhook;

/// Per-call timeout unless the `webhook_timeout_ms` variable says otherwise.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

pub struct HttpWebhook {
    /// Empty when no webhook is configured.
    pub url: String,
    pub traceparent: String,
}

impl Webhook for HttpWebhook {
    fn configured(&self) -> bool {
        !self.url.is_empty()
    }

    async fn deliver(&self, n: &Notification) -> anyhow::Result<()> {
        let body = serde_json::to_vec(n)?;
        // An explicit length spares receivers a chunked body.
        let length = body.len().to_string();
        let request = Request::post(&self.url, body)
            .header("content-type", "application/json")
            .header("content-length", length)
            .header("idempotency-key", &n.id)
            .header("traceparent", &self.traceparent)
            .build();
        let timeout = shop_kit::outbound::timeout_from("webhook_timeout_ms", DEFAULT_TIMEOUT_MS);
        let response = shop_kit::outbound::send(request, timeout)
            .await
            .map_err(|e| anyhow::anyhow!("POST {}: {e:#}", self.url))?;
        let status = *response.status();
        anyhow::ensure!(
            (200..300).contains(&status),
            "POST {}: status {status}",
            self.url
        );
        Ok(())
    }
}
