//! `wasi-kv-probe`: a test component for the host's `wasi:keyvalue@0.2.0-draft2` tests.
//!
//! `POST /<store>/<op>?key=K...` (below the component's route) opens bucket `<store>` and runs
//! `<op>`, answering 200 with JSON: the result, or `{"error": variant, "detail": ...}` with the
//! exact variant of `wasi:keyvalue/store.error`. Values are reported as text (lossy UTF-8) and as
//! `bytes`.
//! - `get`, `set` (value = body), `delete`, `exists`
//! - `list[?cursor=C]`: `list-keys` (sorted), with the cursor when the parameter is present
//! - `get-many` (body: JSON list of keys), `set-many` (body: JSON list of `[key, value]`),
//!   `delete-many` (body: JSON list of keys)
//! - `increment?delta=N`
//! - `cas?current=1&pause_ms=N&set_between=V&retry=1` (new value = body): `cas.new`, then
//!   `current` when asked, a pause, a `set` of `V` through the bucket when asked, then `swap`;
//!   on `cas-failed`, either `swap` again at once with the returned `cas` (`retry=1`) or report
//!   that `cas`'s `current`
//! - `claim?pause_ms=N` (owner = body): takes the key if it is absent: `cas.new`, `current`,
//!   a pause, `swap`
//! - `cas-add?delta=N&pause_ms=M`: adds to a decimal counter with `current` and `swap` (pausing
//!   between them the first time), retrying with the `cas` that `cas-failed` returns until a
//!   swap succeeds; reports the sum and the attempts

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::wit::wasi::keyvalue::batch;
use spin_sdk::wit::wasi::keyvalue::store::{self, Bucket, Error};

#[http_component]
fn handle(request: Request) -> Response {
    let path = request
        .header("spin-path-info")
        .and_then(|value| value.as_str())
        .unwrap_or(request.path())
        .to_owned();
    let query: Query = form_urlencoded::parse(request.query().as_bytes())
        .into_owned()
        .collect();
    let body = request.body();
    let reply = match path.trim_start_matches('/').split_once('/') {
        Some((label, op)) => match store::open(label) {
            Ok(bucket) => run(&bucket, op, &query, body).unwrap_or_else(error),
            Err(e) => error(e),
        },
        None => json!({ "error": "bad-path", "detail": path }),
    };
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(reply.to_string())
        .build()
        .into_response()
}

fn run(bucket: &Bucket, op: &str, query: &Query, body: &[u8]) -> Result<Value, Error> {
    let key = arg(query, "key").unwrap_or_default();
    Ok(match op {
        "get" => {
            let value = bucket.get(key)?;
            json!({ "value": text(value.clone()), "bytes": value })
        }
        "set" => bucket.set(key, body).map(|()| json!({ "ok": true }))?,
        "delete" => bucket.delete(key).map(|()| json!({ "ok": true }))?,
        "exists" => json!({ "exists": bucket.exists(key)? }),
        "list" => {
            let response = bucket.list_keys(arg(query, "cursor"))?;
            let mut keys = response.keys;
            keys.sort();
            json!({ "keys": keys, "cursor": response.cursor })
        }
        "get-many" => {
            let keys: Vec<String> = parse(body);
            let mut pairs: Vec<(String, Option<String>)> = batch::get_many(bucket, &keys)?
                .into_iter()
                .map(|(key, value)| (key, text(value)))
                .collect();
            pairs.sort();
            json!({ "pairs": pairs })
        }
        "set-many" => {
            let pairs: Vec<(String, String)> = parse(body);
            let pairs: Vec<(String, Vec<u8>)> = pairs
                .into_iter()
                .map(|(key, value)| (key, value.into_bytes()))
                .collect();
            batch::set_many(bucket, &pairs).map(|()| json!({ "ok": true }))?
        }
        "delete-many" => {
            let keys: Vec<String> = parse(body);
            batch::delete_many(bucket, &keys).map(|()| json!({ "ok": true }))?
        }
        "increment" => {
            let delta = arg(query, "delta").unwrap_or("1").parse().unwrap_or(1);
            json!({ "value": atomics::increment(bucket, key, delta)? })
        }
        "cas" => compare_and_swap(bucket, key, query, body)?,
        "claim" => claim(bucket, key, query, body)?,
        "cas-add" => cas_add(bucket, key, query)?,
        _ => json!({ "error": "unknown-op", "detail": op }),
    })
}

fn compare_and_swap(
    bucket: &Bucket,
    key: &str,
    query: &Query,
    value: &[u8],
) -> Result<Value, Error> {
    let cas = Cas::new(bucket, key)?;
    let seen = match arg(query, "current") {
        Some("1") => Some(text(cas.current()?)),
        _ => None,
    };
    pause(query);
    if let Some(between) = arg(query, "set_between") {
        bucket.set(key, between.as_bytes())?;
    }
    Ok(match atomics::swap(cas, value) {
        Ok(()) => json!({ "swapped": true, "seen": seen }),
        Err(CasError::CasFailed(latest)) if arg(query, "retry") == Some("1") => {
            json!({ "swapped": false, "retried": atomics::swap(latest, value).is_ok() })
        }
        Err(CasError::CasFailed(latest)) => {
            json!({ "swapped": false, "latest": text(latest.current()?) })
        }
        Err(CasError::StoreError(e)) => return Err(e),
    })
}

fn claim(bucket: &Bucket, key: &str, query: &Query, owner: &[u8]) -> Result<Value, Error> {
    let cas = Cas::new(bucket, key)?;
    if let Some(holder) = cas.current()? {
        return Ok(json!({ "claimed": false, "holder": text(Some(holder)) }));
    }
    pause(query);
    Ok(match atomics::swap(cas, owner) {
        Ok(()) => json!({ "claimed": true }),
        Err(CasError::CasFailed(latest)) => {
            json!({ "claimed": false, "cas_failed": true, "holder": text(latest.current()?) })
        }
        Err(CasError::StoreError(e)) => return Err(e),
    })
}

fn cas_add(bucket: &Bucket, key: &str, query: &Query) -> Result<Value, Error> {
    let delta: i64 = arg(query, "delta").unwrap_or("1").parse().unwrap_or(1);
    let mut cas = Cas::new(bucket, key)?;
    let mut attempts = 1;
    loop {
        let current = text(cas.current()?).map_or(0, |n| n.parse::<i64>().unwrap_or(0));
        let sum = current + delta;
        if attempts == 1 {
            pause(query);
        }
        match atomics::swap(cas, sum.to_string().as_bytes()) {
            Ok(()) => return Ok(json!({ "value": sum, "attempts": attempts })),
            Err(CasError::CasFailed(latest)) => cas = latest,
            Err(CasError::StoreError(e)) => return Err(e),
        }
        attempts += 1;
    }
}

fn pause(query: &Query) {
    let ms = arg(query, "pause_ms").and_then(|ms| ms.parse().ok());
    std::thread::sleep(Duration::from_millis(ms.unwrap_or(0)));
}

fn text(value: Option<Vec<u8>>) -> Option<String> {
    value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> T {
    serde_json::from_slice(body).expect("the request body is the operation's JSON argument")
}

fn error(e: Error) -> Value {
    let (variant, detail) = match e {
        Error::NoSuchStore => ("no-such-store", String::new()),
        Error::AccessDenied => ("access-denied", String::new()),
        Error::Other(detail) => ("other", detail),
    };
    json!({ "error": variant, "detail": detail })
}

/// Query-string parameters (percent-decoded), by name.
type Query = HashMap<String, String>;

fn arg<'a>(query: &'a Query, name: &str) -> Option<&'a str> {
    query.get(name).map(String::as_str)
}
