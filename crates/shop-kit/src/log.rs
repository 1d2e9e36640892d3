//! Structured logs: one JSON object per line on stdout (`level`, `msg`, `service`, `trace_id`,
//! `span_id`, and `order_id` when there is one).
//!
//! A line with a well-known `event` field (see [`events`]) is also a metric: the host counts
//! such lines per component (log-derived metrics; on Spin the log pipeline would).

use serde_json::{json, Map, Value};

use crate::TraceContext;

/// The `event` values the host counts.
pub mod events {
    /// An event received again and ignored (`channel`).
    pub const DUPLICATE: &str = "duplicate";
    /// An event that could not be applied on arrival, kept to be retried (`channel`).
    pub const DEFERRED: &str = "deferred";
    /// An event parked after repeated failures (`channel`).
    pub const DEAD_LETTER: &str = "dead_letter";
    /// An envelope refused because its MAC is missing or wrong (`channel`, `reason`).
    pub const FORGED: &str = "forged";
    /// A circuit breaker changed state (`breaker`, `from`, `to`).
    pub const BREAKER_TRANSITION: &str = "breaker_transition";
}

/// A logger bound to a service and the span of the work at hand.
#[derive(Debug, Clone)]
pub struct Logger {
    /// `None` for shared code that does not know which function runs it (the host tags every
    /// line with its component anyway).
    service: Option<&'static str>,
    trace_id: String,
    /// The host's span for this work; `None` when the host names none in this trace.
    span_id: Option<String>,
}

impl Logger {
    /// A logger for work in trace `trace_id`, in the host's current span of that trace.
    pub fn new(service: &'static str, trace_id: &str) -> Self {
        let span_id = TraceContext::current()
            .filter(|current| current.trace_id == trace_id)
            .map(|current| current.span_id);
        Self {
            service: Some(service),
            trace_id: trace_id.to_string(),
            span_id,
        }
    }

    /// A logger for shared code, which does not know the function it runs in, working in
    /// `trace` (from [`TraceContext::from_header`], so the host's span when it runs one).
    pub fn shared(trace: &TraceContext) -> Self {
        Self {
            service: None,
            trace_id: trace.trace_id.clone(),
            span_id: Some(trace.span_id.clone()),
        }
    }

    /// Renders one log line; `order_id` is left out when empty.
    pub fn line(&self, level: &str, msg: &str, order_id: Option<&str>, extra: Value) -> String {
        let mut obj = Map::new();
        obj.insert("level".into(), json!(level));
        obj.insert("msg".into(), json!(msg));
        if let Some(service) = self.service {
            obj.insert("service".into(), json!(service));
        }
        obj.insert("trace_id".into(), json!(self.trace_id));
        obj.insert("span_id".into(), json!(self.span_id));
        if let Some(id) = order_id {
            obj.insert("order_id".into(), json!(id));
        }
        if let Value::Object(extra) = extra {
            obj.extend(extra);
        }
        Value::Object(obj).to_string()
    }

    pub fn info(&self, msg: &str, order_id: Option<&str>) {
        println!("{}", self.line("info", msg, order_id, Value::Null));
    }

    pub fn warn(&self, msg: &str, order_id: Option<&str>) {
        println!("{}", self.line("warn", msg, order_id, Value::Null));
    }

    pub fn error(&self, msg: &str, order_id: Option<&str>) {
        println!("{}", self.line("error", msg, order_id, Value::Null));
    }

    /// Logs a well-known [`events`] line with its fields.
    pub fn event(
        &self,
        level: &str,
        event: &str,
        msg: &str,
        order_id: Option<&str>,
        fields: Value,
    ) {
        let mut extra = json!({ "event": event });
        if let (Value::Object(extra), Value::Object(fields)) = (&mut extra, fields) {
            extra.extend(fields);
        }
        println!("{}", self.line(level, msg, order_id, extra));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object() {
        let l = Logger::new("orders", "abc");
        let line = l.line("info", "order created", Some("o1"), json!({"status": 201}));
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["service"], "orders");
        assert_eq!(v["trace_id"], "abc");
        assert_eq!(v["order_id"], "o1");
        assert_eq!(v["status"], 201);
        let v: Value = serde_json::from_str(&l.line("warn", "x", None, Value::Null)).unwrap();
        assert!(v.get("order_id").is_none());
        assert!(v.get("span_id").is_some(), "every line has span_id");
    }

    #[test]
    fn shared_code_logs_in_the_span_it_is_given() {
        let trace =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let line = Logger::shared(&trace).line("info", "x", None, json!({"event": "duplicate"}));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["span_id"], "00f067aa0ba902b7");
        assert_eq!(v["event"], "duplicate");
        assert!(v.get("service").is_none());
    }
}
