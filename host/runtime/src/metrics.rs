//! Prometheus text metrics on `--metrics-listen`: requests, errors and duration per component and
//! route; Redis messages handled and failed per component and channel.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    /// (component, route, status) -> count
    requests: BTreeMap<(String, String, u16), u64>,
    /// (component, route) -> (sum of seconds, count)
    durations: BTreeMap<(String, String), (f64, u64)>,
    /// (component, channel, outcome) -> count
    messages: BTreeMap<(String, String, &'static str), u64>,
}

impl Metrics {
    pub fn http_request(&self, component: &str, route: &str, status: u16, duration_ms: f64) {
        if let Ok(mut c) = self.inner.lock() {
            *c.requests
                .entry((component.into(), route.into(), status))
                .or_default() += 1;
            let d = c
                .durations
                .entry((component.into(), route.into()))
                .or_default();
            d.0 += duration_ms / 1000.0;
            d.1 += 1;
        }
    }

    pub fn redis_message(&self, component: &str, channel: &str, ok: bool) {
        let outcome = if ok { "handled" } else { "failed" };
        if let Ok(mut c) = self.inner.lock() {
            *c.messages
                .entry((component.into(), channel.into(), outcome))
                .or_default() += 1;
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(c) = self.inner.lock() else {
            return out;
        };
        out.push_str("# TYPE shop_host_http_requests_total counter\n");
        for ((component, route, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "shop_host_http_requests_total{{component=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(component),
                escape(route)
            );
        }
        out.push_str("# TYPE shop_host_http_request_duration_seconds summary\n");
        for ((component, route), (sum, count)) in &c.durations {
            let labels = format!(
                "component=\"{}\",route=\"{}\"",
                escape(component),
                escape(route)
            );
            let _ = writeln!(
                out,
                "shop_host_http_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "shop_host_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        out.push_str("# TYPE shop_host_redis_messages_total counter\n");
        for ((component, channel, outcome), n) in &c.messages {
            let _ = writeln!(
                out,
                "shop_host_redis_messages_total{{component=\"{}\",channel=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(component),
                escape(channel)
            );
        }
        out
    }

    /// Serves `GET /metrics` (any path, in fact) until the task is dropped.
    pub async fn serve(self: std::sync::Arc<Self>, addr: SocketAddr) -> Result<()> {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(address = %listener.local_addr()?, "metrics listening");
        loop {
            let (stream, _) = listener.accept().await?;
            let metrics = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let body = metrics.render();
                    async move {
                        let mut response = http::Response::new(Full::new(Bytes::from(body)));
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let metrics = Metrics::default();
        metrics.http_request("orders", "/orders/...", 200, 12.0);
        metrics.http_request("orders", "/orders/...", 200, 8.0);
        metrics.redis_message("inventory", "shop.orders", false);
        let text = metrics.render();
        assert!(text.contains(
            "shop_host_http_requests_total{component=\"orders\",route=\"/orders/...\",status=\"200\"} 2"
        ));
        assert!(text.contains("shop_host_http_request_duration_seconds_count{component=\"orders\",route=\"/orders/...\"} 2"));
        assert!(text.contains(
            "shop_host_redis_messages_total{component=\"inventory\",channel=\"shop.orders\",outcome=\"failed\"} 1"
        ));
    }
}
