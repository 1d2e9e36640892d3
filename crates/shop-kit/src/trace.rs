//! W3C trace context: the `traceparent` of an inbound request travels in every envelope and
//! outbound call, so one order's whole saga shares one trace id.

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

    /// Continues the trace of `header`, or starts one when it is absent or malformed.
    pub fn from_header(header: Option<&str>) -> Self {
        header.and_then(Self::parse).unwrap_or_else(Self::new_root)
    }

    /// The same trace with a fresh span id, for an outbound call or a published event.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(8),
        }
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
        let c = t.child();
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.span_id, t.span_id);
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
