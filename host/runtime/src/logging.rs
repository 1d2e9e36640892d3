//! Host logs: JSON lines on stderr via `tracing` (level from `RUST_LOG`, default `info`), and
//! the same `tracing` spans as OpenTelemetry traces (`crate::telemetry`).
//!
//! Host and component lines reach stderr through one background writer thread
//! (`tracing-appender`): a request never waits on a slow terminal or pipe, each line stays whole,
//! and under load the lines queued meanwhile go out in one write instead of one write each.

use std::io::{BufWriter, Write as _};
use std::sync::OnceLock;

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::telemetry::Telemetry;

/// Bytes gathered before the writer thread writes, when lines queue up faster than it writes.
const STDERR_BUFFER: usize = 64 * 1024;

/// The background stderr writer, once [`init`] has installed it.
static STDERR: OnceLock<NonBlocking> = OnceLock::new();

/// What must outlive the app: flushes spans and the queued log lines at shutdown.
pub struct Logging {
    telemetry: Telemetry,
    stderr: WorkerGuard,
}

impl Logging {
    pub async fn shutdown(self) {
        self.telemetry.shutdown().await;
        drop(self.stderr);
    }
}

/// Installs the subscriber and the stderr writer. Must run on tokio (the span exporter is a
/// tokio task).
pub fn init() -> anyhow::Result<Logging> {
    // Not lossy: under a burst a line waits for room in the queue rather than being dropped.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("shop-host-logs")
        .finish(BufWriter::with_capacity(STDERR_BUFFER, std::io::stderr()));
    let _ = STDERR.set(writer.clone());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime_cranelift=warn,cranelift_codegen=warn"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_writer(writer)
        .with_filter(filter);
    let (traces, telemetry) = Telemetry::layer()?;
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    Ok(Logging {
        telemetry,
        stderr: guard,
    })
}

/// Writes one whole line (ending in `\n`) to stderr, after the host's lines queued before it;
/// straight to stderr when [`init`] has not run (tests, library use).
pub(crate) fn write_stderr(line: &[u8]) {
    let _ = match STDERR.get() {
        Some(writer) => writer.make_writer().write_all(line),
        None => std::io::stderr().lock().write_all(line),
    };
}
