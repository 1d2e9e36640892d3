//! Test component for the host's outbound PostgreSQL (`spin:postgres@4.0.0`, `@3.0.0` and
//! `fermyon:spin/postgres@2.0.0`). `POST /` with a JSON body
//! `{"version": 4, "address": "host=...", "ops": [{"execute"|"query": sql, "params": [...]}]}`
//! opens one connection and runs every op on it, in order; the answer lists each op's outcome.
//!
//! For version 4, parameters and values are JSON objects named by the WIT case
//! (`{"int16": 5}`, `{"range-int32": [[1, "inclusive"], null]}`, `{"jsonb": "<text>"}`,
//! `{"db-null": null}`); versions 3 and 2 take the same parameter names and report values in
//! their Rust debug form, which is enough to tell the cases apart.

mod older;
mod v4;

use serde_json::{json, Value};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> Response {
    let body: Value = serde_json::from_slice(request.body()).unwrap_or(Value::Null);
    let address = body["address"].as_str().unwrap_or_default();
    let ops = body["ops"].as_array().cloned().unwrap_or_default();
    let reply = match body["version"].as_u64() {
        Some(3) => older::run_v3(address, &ops),
        Some(2) => older::run_v2(address, &ops),
        _ => v4::run(address, &ops),
    };
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(reply.to_string())
        .build()
}

/// An op's statement and whether it is a query.
pub(crate) fn statement(op: &Value) -> (bool, &str) {
    match op.get("query") {
        Some(sql) => (true, sql.as_str().unwrap_or_default()),
        None => (false, op["execute"].as_str().unwrap_or_default()),
    }
}

/// An op's parameters, as (case name, JSON value) pairs.
pub(crate) fn params(op: &Value) -> Vec<(String, Value)> {
    op["params"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            p.as_object()?
                .iter()
                .next()
                .map(|(k, v)| (k.clone(), v.clone()))
        })
        .collect()
}

pub(crate) fn error(variant: &str, detail: impl Into<Value>) -> Value {
    json!({ "error": variant, "detail": detail.into() })
}
