//! Traces, as Spin's `crates/telemetry`: the host's `tracing` spans become OpenTelemetry spans,
//! with W3C trace context (`traceparent`) taken from inbound requests and injected into
//! outbound ones. When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, spans are exported over OTLP http/protobuf by a batch processor on tokio and flushed
//! on shutdown; otherwise they still get ids (for `traceparent` and the logs) but go nowhere.

use std::collections::HashMap;

use anyhow::Result;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

/// The W3C header (and envelope field) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Where spans go; [`Telemetry::shutdown`] flushes what is still buffered.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

fn set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|value| !value.is_empty())
}

/// Whether the environment asks for OTLP export, as Spin decides it: an endpoint is set and
/// `OTEL_SDK_DISABLED` is not.
fn export_requested() -> bool {
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !set("OTEL_SDK_DISABLED")
}

/// Checks the OTLP protocol asked for (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, default `http/protobuf`, as in Spin). This host speaks only
/// http/protobuf: `grpc` and `http/json` are refused rather than silently sent another way.
fn check_protocol(traces: Option<&str>, general: Option<&str>) -> Result<()> {
    match traces.or(general).unwrap_or("http/protobuf") {
        "http/protobuf" => Ok(()),
        other => anyhow::bail!(
            "OTLP protocol `{other}` is not supported by shop-host; use http/protobuf"
        ),
    }
}

impl Telemetry {
    /// The tracing layer that turns spans into OpenTelemetry spans (exported when requested),
    /// filtered by `SPIN_OTEL_TRACING_LEVEL` as in Spin (default `info`). Must run on tokio.
    pub fn layer<S>() -> Result<(impl Layer<S>, Telemetry)>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("shop-host");
        }
        let mut provider = SdkTracerProvider::builder().with_resource(resource.build());
        if export_requested() {
            let var = |name| std::env::var(name).ok();
            check_protocol(
                var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").as_deref(),
                var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref(),
            )?;
            // Endpoint, headers and timeout come from the OTEL_EXPORTER_OTLP_* variables.
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()?;
            provider =
                provider.with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build());
        }
        let provider = provider.build();
        let filter = EnvFilter::try_from_env("SPIN_OTEL_TRACING_LEVEL")
            .unwrap_or_else(|_| EnvFilter::new("info"));
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("shop-host"))
            .with_threads(false)
            .with_filter(filter);
        Ok((layer, Telemetry { provider }))
    }

    /// Flushes buffered spans and stops the exporter (graceful shutdown).
    pub async fn shutdown(self) {
        // The SDK blocks until the batch task has exported; keep that off the async workers.
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "flushing spans at shutdown failed");
        }
    }
}

/// Makes the span `traceparent` names the parent of `span`; without one `span` starts a trace.
pub fn set_parent(span: &Span, traceparent: Option<&str>) {
    let Some(value) = traceparent else { return };
    let carrier = HashMap::from([(TRACEPARENT.to_string(), value.to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

/// The `traceparent` that names `span`, to hand on; `None` when spans are not recorded.
pub fn traceparent(span: &Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` field of an event envelope (a JSON object), if the message has one.
/// Redis messages have no headers; linking a message to its producer this way is this host's
/// extension (see docs/adr/0005-telemetry.md).
pub fn envelope_traceparent(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    value.get(TRACEPARENT)?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[tokio::test]
    async fn a_span_continues_its_parent_and_hands_on_its_own_id() {
        let (layer, telemetry) = Telemetry::layer().unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        let (child, parent_span) = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            set_parent(&span, Some(PARENT));
            let child = span.in_scope(|| tracing::info_span!("execute"));
            (traceparent(&child).unwrap(), traceparent(&span).unwrap())
        });
        for value in [&child, &parent_span] {
            assert!(
                value.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{value}"
            );
            assert!(!value.contains("00f067aa0ba902b7"), "{value}");
        }
        assert_ne!(child, parent_span);
        telemetry.shutdown().await;
    }

    #[test]
    fn only_http_protobuf_is_spoken() {
        assert!(check_protocol(None, None).is_ok());
        assert!(check_protocol(None, Some("http/protobuf")).is_ok());
        assert!(check_protocol(Some("http/protobuf"), Some("grpc")).is_ok());
        assert!(check_protocol(Some("grpc"), None).is_err());
        assert!(check_protocol(None, Some("http/json")).is_err());
    }

    #[test]
    fn the_envelope_names_its_producer() {
        let payload = format!(r#"{{"seq":1,"traceparent":"{PARENT}"}}"#);
        assert_eq!(
            envelope_traceparent(payload.as_bytes()).as_deref(),
            Some(PARENT)
        );
        assert_eq!(envelope_traceparent(b"not json"), None);
        assert_eq!(envelope_traceparent(b"{}"), None);
    }
}
