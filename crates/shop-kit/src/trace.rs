//! W3C trace context: the `traceparent` of an inbound request travels in every envelope and
//! outbound call, so one order's whole saga shares one trace id.
//!
//! The component exports no spans of its own: the host does (a span per request, per message
//! handled and per outbound call). When the host names the span an instance runs in through
//! the `TRACEPARENT` environment variable (OpenTelemetry's environment carrier; the local host
//! does, see docs/adr/0005-telemetry.md), that span is the current one: log lines carry its id
//! and events published here name it as their parent.

/// The environment variable through which the host names the instance's span.
pub const ENV_CARRIER: &str = "TRACEPARENT";

/// A trace id and the id of the current span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: String,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

impl TraceContext {
    /// Starts a new trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_hex(16),
            span_id: random_hex(8),
        }
    }

    /// Parses a `traceparent` header (`00-<trace>-<span>-<flags>`); `None` if malformed.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = is_lower_hex(version, 2)
            && version != "ff"
            && is_lower_hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && is_lower_hex(span, 16)
            && span.bytes().any(|b| b != b'0')
            && is_lower_hex(flags, 2);
        valid.then(|| Self {
            trace_id: trace.to_string(),
            span_id: span.to_string(),
        })
    }

    /// The span the host runs this instance in (`TRACEPARENT`), if it names one.
    pub fn current() -> Option<Self> {
        std::env::var(ENV_CARRIER)
            .ok()
            .as_deref()
            .and_then(Self::parse)
    }

    /// Continues the trace of `header`, or starts one when it is absent or malformed.
    pub fn from_header(header: Option<&str>) -> Self {
        Self::continued(header.and_then(Self::parse), Self::current())
    }

    /// The context work on behalf of `caller` runs in: the host's `current` span when it
    /// continues the caller's trace (or there is no caller), else the caller's own context.
    fn continued(caller: Option<Self>, current: Option<Self>) -> Self {
        match (caller, current) {
            (Some(caller), Some(current)) if current.trace_id == caller.trace_id => current,
            (Some(caller), _) => caller,
            (None, current) => current.unwrap_or_else(Self::new_root),
        }
    }

    /// The context handed on to an outbound call or a published event: its parent is this
    /// span. Ids are not made up here, since a span id no exporter ever reports would be a
    /// dangling parent; the host wraps outbound calls in spans of its own.
    pub fn child(&self) -> Self {
        self.clone()
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_header_is_continued() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::from_header(Some(h));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.header(), h);
        assert_eq!(
            t.child().header(),
            h,
            "an event's parent is the span that sent it"
        );
    }

    #[test]
    fn the_hosts_span_is_current_within_its_trace() {
        let caller = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let host = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01");
        let other = TraceContext::parse("00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-2222222222222222-01");
        assert_eq!(
            TraceContext::continued(caller.clone(), host.clone()),
            host.clone().unwrap()
        );
        assert_eq!(TraceContext::continued(None, host.clone()), host.unwrap());
        // An event caught up from another trace keeps its own parent.
        assert_eq!(
            TraceContext::continued(other.clone(), caller.clone()),
            other.unwrap()
        );
        assert_eq!(
            TraceContext::continued(caller.clone(), None),
            caller.unwrap()
        );
        assert_eq!(TraceContext::continued(None, None).trace_id.len(), 32);
    }

    #[test]
    fn a_malformed_header_starts_a_new_trace() {
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            let t = TraceContext::from_header(Some(bad));
            assert_eq!(t.trace_id.len(), 32);
            assert!(TraceContext::parse(&t.header()).is_some());
        }
    }
}
