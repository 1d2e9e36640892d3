//! `redis-sink`: a Redis-triggered test component.
//!
//! Each message is appended to a JSON list in the `default` key-value store under the key named by
//! this component's variable `sink_key`, so several components bound to one channel (same wasm,
//! different ids and keys) can be told apart. The payload `fail` makes the handler return an
//! error, to test that a failing handler neither stops the subscriber nor is retried; `sleep-<ms>`
//! is recorded after the handler has slept that long, to test what a slow handler holds up.
//! Any HTTP request gets `{"received": [...]}` for the component's key.

use anyhow::{bail, Context};
use spin_sdk::http::{Request, Response};
use spin_sdk::key_value::Store;
use spin_sdk::{http_component, redis_component, variables};

#[redis_component]
fn on_message(message: Vec<u8>) -> anyhow::Result<()> {
    let message = String::from_utf8(message).context("payload is not UTF-8")?;
    if message == "fail" {
        bail!("redis-sink asked to fail");
    }
    if let Some(ms) = message.strip_prefix("sleep-") {
        let ms = ms
            .parse()
            .context("sleep-<ms> needs a number of milliseconds")?;
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let (store, key) = open()?;
    let mut received = read(&store, &key)?;
    received.push(message);
    store.set_json(&key, &received)?;
    Ok(())
}

#[http_component]
fn list(_request: Request) -> anyhow::Result<Response> {
    let (store, key) = open()?;
    let body = serde_json::json!({ "key": key, "received": read(&store, &key)? });
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build())
}

fn open() -> anyhow::Result<(Store, String)> {
    let key = variables::get("sink_key").context("variable sink_key")?;
    let store = Store::open_default().context("open key-value store default")?;
    Ok((store, key))
}

fn read(store: &Store, key: &str) -> anyhow::Result<Vec<String>> {
    Ok(store.get_json::<Vec<String>>(key)?.unwrap_or_default())
}
