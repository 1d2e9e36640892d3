//! Timestamps as RFC 3339 UTC strings with millisecond precision.

/// Now, e.g. `2026-11-26T04:30:00.123Z`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The milliseconds since the Unix epoch of an RFC 3339 timestamp; `None` when it is not one.
pub fn millis_of(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Milliseconds since the Unix epoch (for breakers and latency).
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
