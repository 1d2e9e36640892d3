//! HTTP adapter of the `PaymentProvider` port: `{payment_provider_url}/charges` and `/refunds`,
//! behind a circuit breaker kept in billing's key-value store, with bounded retries. Each call
//! gives up after `provider_timeout_ms`: a timeout is a failure like any other (counted by the
//! breaker, retried), and the idempotency key makes a retry of a call the provider did finish
//! return the same charge.

use serde_json::{json, Value};
use shop_kit::breaker::KvBreaker;
use spin_sdk::http::Request;

use crate::domain::{ChargeOutcome, CURRENCY};
use crate::service::PaymentProvider;

/// Per-call timeout unless the `provider_timeout_ms` variable says otherwise.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

pub struct HttpProvider {
    pub base_url: String,
    pub traceparent: String,
    pub breaker: KvBreaker,
}

impl HttpProvider {
    /// One provider operation through the breaker; the idempotency key in `body` makes the
    /// retries safe.
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.breaker
            .call(async || self.post_once(path, body.clone()).await)
            .await
    }

    async fn post_once(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/{path}", self.base_url.trim_end_matches('/'));
        let body = body.to_string();
        // An explicit length spares the provider a chunked body.
        let length = body.len().to_string();
        let request = Request::post(&url, body)
            .header("content-type", "application/json")
            .header("content-length", length)
            .header("traceparent", &self.traceparent)
            .build();
        let timeout = shop_kit::outbound::timeout_from("provider_timeout_ms", DEFAULT_TIMEOUT_MS);
        let response = shop_kit::outbound::send(request, timeout)
            .await
            .map_err(|e| anyhow::anyhow!("POST {url}: {e:#}"))?;
        let status = *response.status();
        anyhow::ensure!(
            (200..300).contains(&status),
            "POST {url}: status {status}: {}",
            String::from_utf8_lossy(response.body())
        );
        Ok(serde_json::from_slice(response.body())?)
    }
}

impl PaymentProvider for HttpProvider {
    async fn charge(
        &self,
        amount_cents: i64,
        token: &str,
        idempotency_key: &str,
    ) -> anyhow::Result<ChargeOutcome> {
        let answer = self
            .post(
                "charges",
                json!({"amount_cents": amount_cents, "currency": CURRENCY, "token": token,
                       "idempotency_key": idempotency_key}),
            )
            .await?;
        let provider_ref = answer["provider_ref"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match answer["status"].as_str() {
            Some("captured") => Ok(ChargeOutcome::Captured { provider_ref }),
            Some("declined") => Ok(ChargeOutcome::Declined {
                provider_ref,
                reason: "card_declined".into(),
            }),
            other => anyhow::bail!("provider answered charge status {other:?}"),
        }
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> anyhow::Result<()> {
        self.post(
            "refunds",
            json!({"provider_ref": provider_ref, "amount_cents": amount_cents,
                   "idempotency_key": idempotency_key}),
        )
        .await?;
        Ok(())
    }
}
