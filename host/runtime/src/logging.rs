//! Host logs: JSON lines on stderr via `tracing` (level from `RUST_LOG`, default `info`), and
//! the same `tracing` spans as OpenTelemetry traces ([`crate::telemetry`]).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::telemetry::Telemetry;

/// Installs the subscriber; the returned [`Telemetry`] flushes spans at shutdown. Must run on
/// tokio (the span exporter is a tokio task).
pub fn init() -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime_cranelift=warn,cranelift_codegen=warn"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let (traces, telemetry) = Telemetry::layer()?;
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    Ok(telemetry)
}
