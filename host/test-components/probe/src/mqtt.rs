//! Outbound MQTT (fermyon:spin/mqtt@2.0.0).

use serde_json::{json, Value};
use spin_sdk::mqtt::{Connection, Error, Qos};

use crate::Query;

/// Opens `address` (with `username`, `password` and `keep_alive` seconds, 30 by default) and
/// publishes `payload` to `topic` at `qos` (0, 1 or 2) `count` times (1 by default) on that one
/// connection. Reports `{"published": n}`, or the error with the step that failed (`open` or
/// `publish`) and how many messages went out before it.
pub(crate) fn publish(query: &Query, payload: &[u8]) -> Value {
    let qos = match query.get("qos") {
        "1" => Qos::AtLeastOnce,
        "2" => Qos::ExactlyOnce,
        _ => Qos::AtMostOnce,
    };
    let keep_alive = query.get("keep_alive").parse().unwrap_or(30);
    let count: usize = query.get("count").parse().unwrap_or(1);
    let connection = match Connection::open(
        query.get("address"),
        query.get("username"),
        query.get("password"),
        keep_alive,
    ) {
        Ok(connection) => connection,
        Err(error) => return failure("open", 0, error),
    };
    for published in 0..count {
        if let Err(error) = connection.publish(query.get("topic"), payload, qos) {
            return failure("publish", published, error);
        }
    }
    json!({ "published": count })
}

fn failure(step: &str, published: usize, error: Error) -> Value {
    let (variant, detail) = match error {
        Error::InvalidAddress => ("invalid-address", String::new()),
        Error::TooManyConnections => ("too-many-connections", String::new()),
        Error::ConnectionFailed(detail) => ("connection-failed", detail),
        Error::Other(detail) => ("other", detail),
    };
    json!({ "step": step, "published": published, "error": variant, "detail": detail })
}
