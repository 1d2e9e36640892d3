//! fermyon:spin/key-value@2.0.0 operations.

use serde_json::{json, Value};
use spin_sdk::key_value::{Error, Store};

/// Opens `store` and runs `op` on `key`; reports the value or the error variant.
pub(crate) fn run(store: &str, op: &str, key: &str, value: &[u8]) -> Value {
    let result = Store::open(store).and_then(|store| {
        match op {
        "get" => store.get(key).map(|value| {
            json!({ "value": value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()) })
        }),
        "set" => store.set(key, value).map(|()| json!({ "ok": true })),
        "delete" => store.delete(key).map(|()| json!({ "ok": true })),
        "exists" => store.exists(key).map(|exists| json!({ "exists": exists })),
        "keys" => store.get_keys().map(|mut keys| {
            keys.sort();
            json!({ "keys": keys })
        }),
        _ => Ok(json!({ "error": "unknown-op", "detail": op })),
    }
    });
    result.unwrap_or_else(|error| {
        let (variant, detail) = match error {
            Error::StoreTableFull => ("store-table-full", String::new()),
            Error::NoSuchStore => ("no-such-store", String::new()),
            Error::AccessDenied => ("access-denied", String::new()),
            Error::Other(detail) => ("other", detail),
        };
        json!({ "error": variant, "detail": detail })
    })
}
