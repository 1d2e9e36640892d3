//! HTTP adapter of the `PaymentProvider` port: `{payment_provider_url}/charges` and `/refunds`,
//! behind a circuit breaker kept in billing's key-value store, with bounded retries. Each call
//! gives up after `provider_timeout_ms`: a timeout is a failure like any other (counted by the
//! breaker, retried), and the idempotency key makes a retry of a call the provider did finish
//! return the same charge.
//!
//! Every call carries the shop's key (`Authorization: Bearer`). Answers are classified so that
//! the caller knows whether asking again can help: a 4xx (but 401, 403, 408 and 429) is the
//! provider refusing this very request, final, and a successful call
//! for the breaker (the provider is up); 5xx, 408, 429, timeouts and refused connections are
//! errors (and so are 401 and 403, a key problem of the shop's), which the breaker counts and the event's retries try again (an open breaker's
//! refusal is `shop_kit::pending::NotAttempted`, which costs the event no attempt).

use serde_json::{json, Value};
use shop_kit::breaker::KvBreaker;
use spin_sdk::http::{Method, Request};

use crate::domain::{ChargeOutcome, CURRENCY};
use crate::service::PaymentProvider;

/// Per-call timeout unless the `provider_timeout_ms` variable says otherwise.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

pub struct HttpProvider {
    pub base_url: String,
    /// The shop's secret key at the provider (`payment_provider_key`), sent as a bearer token.
    pub api_key: String,
    pub traceparent: String,
    pub breaker: KvBreaker,
}

/// What an HTTP status from the provider means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// 2xx: an answer to read.
    Success,
    /// 4xx but 401, 403, 408 and 429: the provider refused the request and will refuse it
    /// again.
    Refused,
    /// 5xx, 408, 429, and 401/403 (the shop's key is wrong or revoked: the operator's mistake,
    /// not the order's, so its charge waits, parked at worst, until the key is fixed): a later
    /// call may succeed.
    Transient,
    /// 1xx, 3xx: nothing billing can read, nor a reason to think a retry helps.
    Unexpected,
}

fn classify(status: u16) -> Class {
    match status {
        200..=299 => Class::Success,
        401 | 403 | 408 | 429 | 500..=599 => Class::Transient,
        400..=499 => Class::Refused,
        _ => Class::Unexpected,
    }
}

/// An answer the provider gave (anything but a transient failure).
#[derive(Debug)]
struct Reply {
    url: String,
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| anyhow::anyhow!("{}: unreadable answer: {e}", self.url))
    }

    /// `<status> <error code>: <message>` from the provider's error body, for the record of
    /// a refusal.
    fn refusal(&self) -> String {
        let error = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .map(|v| v["error"].clone());
        let field = |name: &str| {
            error
                .as_ref()
                .and_then(|e| e[name].as_str())
                .map(str::to_string)
        };
        let code = field("code").unwrap_or_else(|| "UNKNOWN".into());
        let message = field("message").unwrap_or_else(|| {
            String::from_utf8_lossy(&self.body)
                .chars()
                .take(200)
                .collect()
        });
        format!("{} {code}: {message}", self.status)
    }

    /// The error for an answer billing does not expect.
    fn unexpected(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: status {}: {}",
            self.url,
            self.status,
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// A charge as the provider answers it: captured or declined; `processing` (still running) is
/// an error, to be asked again later. A refunded charge was captured (billing refunds only what it recorded captured).
fn charge_outcome(charge: &Value) -> anyhow::Result<ChargeOutcome> {
    let provider_ref = charge["provider_ref"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match charge["status"].as_str() {
        Some("captured" | "refunded") => Ok(ChargeOutcome::Captured { provider_ref }),
        Some("declined") => Ok(ChargeOutcome::Declined {
            provider_ref,
            reason: "card_declined".into(),
        }),
        Some("processing") => {
            anyhow::bail!("the provider is still processing charge {provider_ref}")
        }
        other => anyhow::bail!("provider answered charge status {other:?}"),
    }
}

/// `key` as one path segment: unreserved characters stay, every other byte is %-encoded.
fn path_segment(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl HttpProvider {
    /// One provider operation through the breaker; the idempotency key (in `body`, or the
    /// lookup's path) makes the retries safe. An error means the provider did not answer, or
    /// the breaker, open, did not ask it.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Reply> {
        self.breaker
            .call(async || self.send_once(method.clone(), path, body.as_ref()).await)
            .await
    }

    /// One attempt: an answer, including a refusal (the provider is up), or an error when the
    /// provider did not answer or failed transiently, for the breaker to count and retry.
    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}/{path}", self.base_url.trim_end_matches('/'));
        let mut builder = Request::builder();
        builder
            .method(method.clone())
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.api_key))
            .header("traceparent", &self.traceparent);
        if let Some(body) = body {
            let body = body.to_string();
            // An explicit length spares the provider a chunked body.
            builder
                .header("content-type", "application/json")
                .header("content-length", body.len().to_string())
                .body(body);
        }
        let timeout = shop_kit::outbound::timeout_from("provider_timeout_ms", DEFAULT_TIMEOUT_MS);
        let response = shop_kit::outbound::send(builder.build(), timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{method} {url}: {e:#}"))?;
        let reply = Reply {
            url: format!("{method} {url}"),
            status: *response.status(),
            body: response.into_body(),
        };
        if classify(reply.status) == Class::Transient {
            return Err(reply.unexpected());
        }
        Ok(reply)
    }

    /// The provider's charge under `idempotency_key` as it answers it, `None` when it never
    /// received one (404).
    async fn lookup(&self, idempotency_key: &str) -> anyhow::Result<Option<Value>> {
        let path = format!("charges/{}", path_segment(idempotency_key));
        let reply = self.call(Method::Get, &path, None).await?;
        match classify(reply.status) {
            Class::Success => reply.json().map(Some),
            Class::Refused if reply.status == 404 => Ok(None),
            _ => Err(reply.unexpected()),
        }
    }

    /// After a 409 to a charge: the key's charge may be this very request still running (a
    /// retry of a call that timed out) or settled since, which a lookup tells from a key
    /// reused for another charge (a final rejection). The lookup shows no token, so a charge
    /// of the same amount counts as this one: the key is the order, whose token never changes.
    async fn after_conflict(
        &self,
        conflict: &Reply,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> anyhow::Result<ChargeOutcome> {
        let Some(charge) = self.lookup(idempotency_key).await? else {
            anyhow::bail!(
                "{}: conflict over a charge the provider no longer holds",
                conflict.url
            );
        };
        if charge["amount_cents"].as_i64() != Some(amount_cents) {
            return Ok(ChargeOutcome::Rejected {
                reason: conflict.refusal(),
            });
        }
        charge_outcome(&charge)
    }
}

impl PaymentProvider for HttpProvider {
    async fn charge(
        &self,
        amount_cents: i64,
        token: &str,
        idempotency_key: &str,
    ) -> anyhow::Result<ChargeOutcome> {
        let body = json!({"amount_cents": amount_cents, "currency": CURRENCY, "token": token,
                          "idempotency_key": idempotency_key});
        let reply = self.call(Method::Post, "charges", Some(body)).await?;
        match classify(reply.status) {
            Class::Success => charge_outcome(&reply.json()?),
            Class::Refused if reply.status == 409 => {
                self.after_conflict(&reply, amount_cents, idempotency_key)
                    .await
            }
            Class::Refused => Ok(ChargeOutcome::Rejected {
                reason: reply.refusal(),
            }),
            _ => Err(reply.unexpected()),
        }
    }

    /// What the provider made of the charge under `idempotency_key`: `None` when it never
    /// received one, so charging with that key cannot charge twice. A charge still processing
    /// is an error, like a provider that does not answer.
    async fn find_charge(&self, idempotency_key: &str) -> anyhow::Result<Option<ChargeOutcome>> {
        match self.lookup(idempotency_key).await? {
            Some(charge) => charge_outcome(&charge).map(Some),
            None => Ok(None),
        }
    }

    /// A refused refund is an error that asking again will not fix.
    async fn refund(
        &self,
        provider_ref: &str,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> anyhow::Result<()> {
        let body = json!({"provider_ref": provider_ref, "amount_cents": amount_cents,
                          "idempotency_key": idempotency_key});
        let reply = self.call(Method::Post, "refunds", Some(body)).await?;
        match classify(reply.status) {
            Class::Success => Ok(()),
            Class::Refused => anyhow::bail!("{}: refused: {}", reply.url, reply.refusal()),
            _ => Err(reply.unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for (status, class) in [
            (200, Class::Success),
            (201, Class::Success),
            (400, Class::Refused),
            (404, Class::Refused),
            (409, Class::Refused),
            (408, Class::Transient),
            (401, Class::Transient),
            (403, Class::Transient),
            (429, Class::Transient),
            (500, Class::Transient),
            (503, Class::Transient),
            (302, Class::Unexpected),
        ] {
            assert_eq!(classify(status), class, "{status}");
        }
    }

    #[test]
    fn a_refusal_names_status_code_and_message() {
        let reply = |body: &str| Reply {
            url: "POST http://p/charges".into(),
            status: 400,
            body: body.as_bytes().to_vec(),
        };
        let answered = reply(
            r#"{"error": {"code": "INVALID_ARGUMENT", "message": "amount_cents: must be between 1 and 10", "service": "payment-sim"}}"#,
        );
        assert_eq!(
            answered.refusal(),
            "400 INVALID_ARGUMENT: amount_cents: must be between 1 and 10"
        );
        assert_eq!(reply("bad gateway").refusal(), "400 UNKNOWN: bad gateway");
    }

    #[test]
    fn charges_read_as_outcomes_and_processing_is_not_an_outcome() {
        let charge = |status: &str| json!({"provider_ref": "ch_1", "status": status});
        let captured = ChargeOutcome::Captured {
            provider_ref: "ch_1".into(),
        };
        assert_eq!(charge_outcome(&charge("captured")).unwrap(), captured);
        assert_eq!(charge_outcome(&charge("refunded")).unwrap(), captured);
        assert_eq!(
            charge_outcome(&charge("declined")).unwrap(),
            ChargeOutcome::Declined {
                provider_ref: "ch_1".into(),
                reason: "card_declined".into(),
            }
        );
        let processing = charge_outcome(&charge("processing")).unwrap_err();
        assert!(
            processing.to_string().contains("still processing"),
            "{processing}"
        );
        assert!(charge_outcome(&charge("odd")).is_err());
    }

    #[test]
    fn keys_are_one_path_segment() {
        assert_eq!(path_segment("order-1_a.b~"), "order-1_a.b~");
        assert_eq!(path_segment("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
    }
}
