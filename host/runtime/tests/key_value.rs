//! fermyon:spin/key-value@2.0.0: Spin's default store, labelled stores and access checks.

mod storage_config;
mod support;

use serde_json::{json, Value};
use testkit::Host;

/// Runs a key-value operation through the probe mounted at `prefix`.
fn kv(host: &Host, prefix: &str, store: &str, op: &str, key: &str, value: &str) -> Value {
    let path = format!("{prefix}/kv/{store}/{op}?key={key}");
    let response = host.post(&path, value.as_bytes());
    assert_eq!(response.status, 200, "POST {path}: {}", response.body);
    response.json()
}

fn start() -> (Host, testkit::tempfile::TempDir) {
    let (config_dir, config) = storage_config::storage_runtime_config();
    let host = Host::start(support::options("storage.toml").runtime_config(config));
    (host, config_dir)
}

#[test]
fn default_store_round_trip_and_persistence() {
    let (mut host, _config) = start();
    assert_eq!(
        kv(&host, "", "default", "get", "k1", ""),
        json!({ "value": null })
    );
    assert_eq!(
        kv(&host, "", "default", "set", "k1", "v1"),
        json!({ "ok": true })
    );
    assert_eq!(
        kv(&host, "", "default", "set", "k2", "v2"),
        json!({ "ok": true })
    );
    assert_eq!(
        kv(&host, "", "default", "get", "k1", ""),
        json!({ "value": "v1" })
    );
    assert_eq!(
        kv(&host, "", "default", "exists", "k1", ""),
        json!({ "exists": true })
    );
    assert_eq!(
        kv(&host, "", "default", "keys", "", ""),
        json!({ "keys": ["k1", "k2"] })
    );
    assert_eq!(
        kv(&host, "", "default", "delete", "k1", ""),
        json!({ "ok": true })
    );
    assert_eq!(
        kv(&host, "", "default", "exists", "k1", ""),
        json!({ "exists": false })
    );
    assert_eq!(
        kv(&host, "", "default", "get", "k1", ""),
        json!({ "value": null })
    );
    assert_eq!(
        kv(&host, "", "default", "keys", "", ""),
        json!({ "keys": ["k2"] })
    );

    let file = host.state_dir().join("sqlite_key_value.db");
    assert!(
        file.is_file(),
        "Spin keeps the default store in {}",
        file.display()
    );
    let db = rusqlite::Connection::open(&file).expect("open the default store's file");
    let stored: Vec<u8> = db
        .query_row(
            "SELECT value FROM spin_key_value WHERE store = 'default' AND key = 'k2'",
            [],
            |row| row.get(0),
        )
        .expect("Spin's table layout spin_key_value(store, key, value)");
    assert_eq!(
        stored, b"v2",
        "a .spin directory stays interchangeable with Spin's"
    );

    host.restart();
    assert_eq!(
        kv(&host, "", "default", "get", "k2", ""),
        json!({ "value": "v2" })
    );
}

#[test]
fn stores_are_isolated_by_label_and_shared_across_components() {
    let (host, config) = start();
    assert_eq!(
        kv(&host, "", "extra", "set", "k", "in-extra"),
        json!({ "ok": true })
    );
    assert_eq!(
        kv(&host, "", "default", "set", "k", "in-default"),
        json!({ "ok": true })
    );
    assert_eq!(
        kv(&host, "", "extra", "get", "k", ""),
        json!({ "value": "in-extra" })
    );
    assert_eq!(
        kv(&host, "", "default", "get", "k", ""),
        json!({ "value": "in-default" })
    );
    assert_eq!(
        kv(&host, "/other", "default", "get", "k", ""),
        json!({ "value": "in-default" }),
        "components granted the same label share the store"
    );
    assert!(
        config.path().join("extra-kv.db").is_file(),
        "runtime config path of store extra is used"
    );
}

#[test]
fn only_granted_stores_open() {
    let (host, _config) = start();
    for (prefix, store) in [
        ("/other", "extra"),
        ("", "ungranted"),
        ("", "never_defined"),
    ] {
        let reply = kv(&host, prefix, store, "get", "k", "");
        assert_eq!(
            reply["error"], "access-denied",
            "component at '{prefix}' opening {store}: {reply}"
        );
    }
}
