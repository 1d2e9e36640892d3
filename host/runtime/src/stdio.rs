//! Component stdout/stderr, forwarded line by line as JSON log records tagged with the
//! component, trigger and route that produced them, and appended to the component's log files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::metrics::Metrics;

/// Longest line kept before it is forwarded anyway, so a guest without newlines can't grow memory.
const MAX_LINE: usize = 64 * 1024;

/// Where a guest's output came from; attached to every forwarded line.
#[derive(Clone)]
pub struct LogContext {
    pub component: Arc<str>,
    pub trigger: &'static str,
    pub route: Arc<str>,
    /// The span the instance runs in (W3C `traceparent`), when spans are recorded.
    pub traceparent: Option<Arc<str>>,
    /// Counts the well-known `event` lines (log-derived metrics).
    pub metrics: Arc<Metrics>,
}

/// A guest output stream (`stdout` or `stderr`) that becomes log lines.
#[derive(Clone)]
pub struct LogStream {
    context: LogContext,
    stream: &'static str,
    /// `<log_dir>/<component>_<stream>.txt`, as Spin keeps them, when the app has a log directory.
    file: Option<Arc<Mutex<File>>>,
}

impl LogStream {
    pub fn new(context: LogContext, stream: &'static str, file: Option<Arc<Mutex<File>>>) -> Self {
        Self {
            context,
            stream,
            file,
        }
    }
}

/// Opens (appending) the log files of one component: `(stdout, stderr)`.
pub fn open_log_files(log_dir: &Path, component: &str) -> io::Result<[Arc<Mutex<File>>; 2]> {
    std::fs::create_dir_all(log_dir)?;
    let open = |stream: &str| -> io::Result<Arc<Mutex<File>>> {
        let path = log_dir.join(format!("{component}_{stream}.txt"));
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Arc::new(Mutex::new(file)))
    };
    Ok([open("stdout")?, open("stderr")?])
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            stream: self.clone(),
            buffer: Vec::new(),
        })
    }
}

/// Buffers bytes until a newline, then emits the line.
struct LineWriter {
    stream: LogStream,
    buffer: Vec<u8>,
}

impl LineWriter {
    fn emit_complete_lines(&mut self) {
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            self.emit(&line[..end]);
        }
        if self.buffer.len() >= MAX_LINE {
            let line = std::mem::take(&mut self.buffer);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let context = &self.stream.context;
        let record = log_record(context, self.stream.stream, &text, SystemTime::now());
        if let Some(fields) = record.get("fields").and_then(Value::as_object) {
            context.metrics.log_event(&context.component, fields);
        }
        // Each line is formatted first and written whole, in one write: formatting straight
        // into an unbuffered stream costs a system call per JSON token.
        let mut json = record.to_string().into_bytes();
        json.push(b'\n');
        crate::logging::write_stderr(&json);
        if let Some(file) = &self.stream.file {
            if let Ok(mut file) = file.lock() {
                let _ = file.write_all(format!("{}\n", text.trim_end_matches('\r')).as_bytes());
            }
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.buffer.extend_from_slice(buf);
        self.emit_complete_lines();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            self.emit(&rest);
        }
    }
}

/// One component output line as a JSON log record. A line that is itself a JSON object (the
/// functions log that way) is kept whole under `fields`, and its `level`, `msg`/`message`,
/// `trace_id` and `span_id` are lifted; any other line becomes `message`, in the instance's span.
fn log_record(ctx: &LogContext, stream: &str, line: &str, now: SystemTime) -> Value {
    let line = line.trim_end_matches('\r');
    let parsed = serde_json::from_str::<Map<String, Value>>(line).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|fields| fields.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let level = field("level").map_or_else(|| "INFO".to_string(), |l| l.to_uppercase());
    let message = field("msg")
        .or_else(|| field("message"))
        .unwrap_or_else(|| line.to_string());
    let (trace_id, span_id) = match field("trace_id") {
        Some(trace_id) => (Some(trace_id), field("span_id")),
        None => ctx
            .traceparent
            .as_deref()
            .and_then(span_ids)
            .map(|(trace, span)| (Some(trace.to_string()), Some(span.to_string())))
            .unwrap_or_default(),
    };
    let mut record = json!({
        "timestamp": rfc3339(now),
        "level": level,
        "message": message,
        "target": "component",
        "component": ctx.component.as_ref(),
        "stream": stream,
        "trigger": ctx.trigger,
        "route": ctx.route.as_ref(),
        "trace_id": trace_id,
        "span_id": span_id,
    });
    if let Some(fields) = parsed {
        record["fields"] = Value::Object(fields);
    }
    record
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC (civil-from-days, H. Hinnant), to match the host's logs.
fn rfc3339(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The trace id and span id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn span_ids(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.split('-');
    let _version = parts.next()?;
    let (trace_id, span_id) = (parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(trace_id, 32) && hex(span_id, 16)).then_some((trace_id, span_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn context() -> LogContext {
        LogContext {
            component: "orders".into(),
            trigger: "http",
            route: "/orders/...".into(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            metrics: Arc::default(),
        }
    }

    #[test]
    fn plain_lines_become_messages_tagged_with_their_origin() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_129_600_123);
        let record = log_record(&context(), "stdout", "hello\r", at);
        assert_eq!(record["message"], "hello");
        assert_eq!(record["component"], "orders");
        assert_eq!(record["trigger"], "http");
        assert_eq!(record["route"], "/orders/...");
        assert_eq!(record["stream"], "stdout");
        assert_eq!(record["level"], "INFO");
        assert_eq!(record["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(record["span_id"], "00f067aa0ba902b7");
        assert_eq!(record["timestamp"], "2025-11-26T04:00:00.123Z");
        assert!(record.get("fields").is_none());
    }

    #[test]
    fn json_lines_keep_their_fields() {
        let line =
            r#"{"level":"warn","msg":"slow","trace_id":"abc","span_id":"def","order_id":"o1"}"#;
        let record = log_record(&context(), "stderr", line, SystemTime::now());
        assert_eq!(record["level"], "WARN");
        assert_eq!(record["message"], "slow");
        assert_eq!(record["trace_id"], "abc");
        assert_eq!(record["span_id"], "def");
        assert_eq!(record["fields"]["order_id"], "o1");
    }

    #[test]
    fn traceparent_gives_its_ids() {
        assert_eq!(
            span_ids("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        );
        assert_eq!(span_ids("garbage"), None);
        assert_eq!(span_ids("00-xyz-00f067aa0ba902b7-01"), None);
    }
}
