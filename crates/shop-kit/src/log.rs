//! Structured logs: one JSON object per line on stdout
//! (`level`, `msg`, `service`, `trace_id`, and `order_id` when there is one).

use serde_json::{json, Map, Value};

/// A logger bound to a service and the trace of the work at hand.
#[derive(Debug, Clone)]
pub struct Logger {
    service: &'static str,
    trace_id: String,
}

impl Logger {
    pub fn new(service: &'static str, trace_id: &str) -> Self {
        Self {
            service,
            trace_id: trace_id.to_string(),
        }
    }

    /// Renders one log line; `order_id` is left out when empty.
    pub fn line(&self, level: &str, msg: &str, order_id: Option<&str>, extra: Value) -> String {
        let mut obj = Map::new();
        obj.insert("level".into(), json!(level));
        obj.insert("msg".into(), json!(msg));
        obj.insert("service".into(), json!(self.service));
        obj.insert("trace_id".into(), json!(self.trace_id));
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
    }
}
