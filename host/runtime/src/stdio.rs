//! Component stdout/stderr, forwarded line by line as structured log events tagged with the
//! component, trigger and route that produced them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept before it is forwarded anyway, so a guest without newlines can't grow memory.
const MAX_LINE: usize = 64 * 1024;

/// Where a guest's output came from; attached to every forwarded line.
#[derive(Clone, Debug)]
pub struct LogContext {
    pub component: Arc<str>,
    pub trigger: &'static str,
    pub route: Arc<str>,
    pub trace_id: Option<Arc<str>>,
}

/// A guest output stream (`stdout` or `stderr`) that becomes log lines.
#[derive(Clone)]
pub struct LogStream {
    context: LogContext,
    stream: &'static str,
}

impl LogStream {
    pub fn new(context: LogContext, stream: &'static str) -> Self {
        Self { context, stream }
    }
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
        let text = text.trim_end_matches('\r');
        let ctx = &self.stream.context;
        tracing::info!(
            target: "component",
            component = %ctx.component,
            stream = self.stream.stream,
            trigger = ctx.trigger,
            route = %ctx.route,
            trace_id = ctx.trace_id.as_deref().unwrap_or(""),
            "{text}"
        );
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

/// The trace id of a W3C `traceparent` header (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id_from_traceparent(value: &str) -> Option<&str> {
    let mut parts = value.split('-');
    let _version = parts.next()?;
    let trace_id = parts.next()?;
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_gives_its_trace_id() {
        assert_eq!(
            trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_from_traceparent("garbage"), None);
        assert_eq!(
            trace_id_from_traceparent("00-xyz-00f067aa0ba902b7-01"),
            None
        );
    }
}
