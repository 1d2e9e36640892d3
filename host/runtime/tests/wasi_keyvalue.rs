//! wasi:keyvalue@0.2.0-draft2 (`store`, `atomics`, `batch`) through a real component
//! (`wasi-kv-probe`): Spin's semantics, grants, interop with fermyon:spin/key-value, and the
//! atomicity of `increment` and compare-and-swap across instances and across host processes.

mod storage_config;
mod support;

use serde_json::{json, Value};
use std::time::Duration;

use testkit::tempfile::TempDir;
use testkit::{eventually, Host};

/// Runs `op` on bucket `store` through the component mounted at `prefix` (`""` or `/other`).
fn wkv(host: &Host, prefix: &str, store: &str, op: &str, query: &str, body: &[u8]) -> Value {
    let path = format!("{prefix}/{store}/{op}?{query}");
    let response = host.post(&path, body);
    assert_eq!(response.status, 200, "POST {path}: {}", response.body);
    response.json()
}

fn options(config: &std::path::Path) -> testkit::HostOptions {
    testkit::require_components(&["wasi-kv-probe"]);
    support::options("wasi-kv.toml").runtime_config(config)
}

fn start() -> (Host, TempDir) {
    let (config_dir, config) = storage_config::storage_runtime_config();
    let host = Host::start(options(&config));
    (host, config_dir)
}

/// Sends `requests` at once (one thread each) and returns the answers in order.
fn concurrently(requests: Vec<(&Host, String, Vec<u8>)>) -> Vec<Value> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .into_iter()
            .map(|(host, path, body)| {
                scope.spawn(move || {
                    let response = host.post(&path, &body);
                    assert_eq!(response.status, 200, "POST {path}: {}", response.body);
                    response.json()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn bucket_operations_behave_as_spin() {
    let (host, _config) = start();
    let kv =
        |op: &str, query: &str, body: &str| wkv(&host, "", "default", op, query, body.as_bytes());
    assert_eq!(kv("get", "key=k1", "")["value"], Value::Null);
    assert_eq!(kv("exists", "key=k1", ""), json!({ "exists": false }));
    assert_eq!(kv("set", "key=k1", "v1"), json!({ "ok": true }));
    assert_eq!(kv("set", "key=k2", "v2"), json!({ "ok": true }));
    assert_eq!(
        kv("get", "key=k1", ""),
        json!({ "value": "v1", "bytes": b"v1" })
    );
    assert_eq!(kv("exists", "key=k1", ""), json!({ "exists": true }));
    assert_eq!(
        kv("list", "", ""),
        json!({ "keys": ["k1", "k2"], "cursor": null }),
        "every key at once, no cursor"
    );
    assert_eq!(
        kv("list", "cursor=k1", ""),
        json!({ "error": "other", "detail": "list_keys: cursor not supported" })
    );
    assert_eq!(kv("set", "key=k1", "again"), json!({ "ok": true }));
    assert_eq!(kv("get", "key=k1", "")["value"], "again");
    assert_eq!(kv("delete", "key=k1", ""), json!({ "ok": true }));
    assert_eq!(
        kv("delete", "key=k1", ""),
        json!({ "ok": true }),
        "absent: no-op"
    );
    assert_eq!(kv("exists", "key=k1", ""), json!({ "exists": false }));
    assert_eq!(kv("list", "", "")["keys"], json!(["k2"]));
}

#[test]
fn batch_operations_behave_as_spin() {
    let (host, _config) = start();
    let kv = |op: &str, body: Value| wkv(&host, "", "default", op, "", body.to_string().as_bytes());
    let pairs = json!([["a", "1"], ["b", "2"], ["a", "3"]]);
    assert_eq!(kv("set-many", pairs), json!({ "ok": true }));
    assert_eq!(
        kv("get-many", json!(["a", "b", "missing", "a"])),
        json!({ "pairs": [["a", "3"], ["b", "2"]] }),
        "later pairs win; as Spin's `IN` query, absent keys are left out and each key comes once"
    );
    assert_eq!(kv("get-many", json!([])), json!({ "pairs": [] }));
    assert_eq!(kv("set-many", json!([])), json!({ "ok": true }));
    assert_eq!(kv("delete-many", json!([])), json!({ "ok": true }));
    assert_eq!(
        kv("delete-many", json!(["a", "missing"])),
        json!({ "ok": true })
    );
    assert_eq!(kv("list", json!(null))["keys"], json!(["b"]));
}

#[test]
fn only_granted_stores_open_and_buckets_share_spin_stores() {
    let (host, _config) = start();
    // `/other` is granted default only, `ungranted` is granted to nobody, `never_defined` is
    // neither defined nor granted: access-denied for every one, whatever the operation.
    let refused: Vec<Value> = [
        ("/other", "extra", "get"),
        ("/other", "extra", "list"),
        ("", "ungranted", "increment"),
        ("", "never_defined", "cas"),
    ]
    .into_iter()
    .map(|(prefix, store, op)| wkv(&host, prefix, store, op, "key=k", b"")["error"].clone())
    .collect();
    assert_eq!(refused, vec![json!("access-denied"); 4]);

    assert_eq!(
        wkv(&host, "", "extra", "set", "key=k", b"wasi"),
        json!({ "ok": true })
    );
    assert_eq!(
        wkv(&host, "", "default", "set", "key=k", b"dflt"),
        json!({ "ok": true })
    );
    assert_eq!(
        wkv(&host, "/other", "default", "get", "key=k", b"")["value"],
        "dflt",
        "components granted the same label share the bucket"
    );
    let spin_get = host.post("/spin/kv/extra/get?key=k", b"");
    assert_eq!(
        spin_get.json(),
        json!({ "value": "wasi" }),
        "a bucket is fermyon:spin/key-value's store of the same label"
    );
    let spin_set = host.post("/spin/kv/extra/set?key=from-spin", b"spin");
    assert_eq!(spin_set.json(), json!({ "ok": true }));
    assert_eq!(
        wkv(&host, "", "extra", "get", "key=from-spin", b"")["value"],
        "spin"
    );
}

#[test]
fn increment_stores_a_little_endian_i64_that_get_reads() {
    let (host, config) = start();
    let kv = |op: &str, query: &str, body: &[u8]| wkv(&host, "", "extra", op, query, body);
    assert_eq!(kv("increment", "key=n&delta=5", b""), json!({ "value": 5 }));
    assert_eq!(
        kv("increment", "key=n&delta=-7", b""),
        json!({ "value": -2 })
    );
    assert_eq!(
        kv("get", "key=n", b"")["bytes"],
        json!((-2i64).to_le_bytes()),
        "get reads the counter as Spin stores it"
    );

    let db = rusqlite::Connection::open(config.path().join("extra-kv.db")).unwrap();
    let stored: Vec<u8> = db
        .query_row(
            "SELECT value FROM spin_key_value WHERE store = 'extra' AND key = 'n'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, (-2i64).to_le_bytes());

    assert_eq!(
        kv("set", "key=m", &40i64.to_le_bytes()),
        json!({ "ok": true })
    );
    assert_eq!(
        kv("increment", "key=m&delta=2", b""),
        json!({ "value": 42 })
    );
    assert_eq!(
        kv("set", "key=max", &i64::MAX.to_le_bytes()),
        json!({ "ok": true })
    );
    assert_eq!(
        kv("increment", "key=max&delta=1", b""),
        json!({ "value": i64::MIN }),
        "wraps, as Spin's release build"
    );

    assert_eq!(kv("set", "key=text", b"abc"), json!({ "ok": true }));
    let response = host.post("/extra/increment?key=text&delta=1", b"");
    assert_eq!(
        response.status, 500,
        "a value that is not a counter traps the instance (Spin's store panics): {}",
        response.body
    );
    let logged = eventually(Duration::from_secs(5), || {
        host.logs()
            .contains("holds 3 bytes, not a counter")
            .then_some(())
    });
    assert!(logged.is_some(), "the trap names the key:\n{}", host.logs());
    assert_eq!(kv("get", "key=text", b"")["value"], "abc", "left as it was");
}

#[test]
fn concurrent_increments_sum() {
    let (host, _config) = start();
    let requests = (1..=40)
        .map(|i| {
            (
                &host,
                format!("/default/increment?key=hits&delta={i}"),
                vec![],
            )
        })
        .collect();
    let answers = concurrently(requests);
    let mut seen: Vec<i64> = answers
        .iter()
        .map(|a| a["value"].as_i64().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        40,
        "every increment returned its own sum: {answers:?}"
    );
    let total: i64 = 40 * 41 / 2;
    assert_eq!(*seen.last().unwrap(), total);
    let stored = wkv(&host, "", "default", "get", "key=hits", b"");
    assert_eq!(stored["bytes"], json!(total.to_le_bytes()));
}

#[test]
fn compare_and_swap_writes_only_what_was_expected() {
    let (host, _config) = start();
    let kv =
        |op: &str, query: &str, body: &str| wkv(&host, "", "default", op, query, body.as_bytes());
    kv("set", "key=k", "v1");
    // (query, new value, reply, value then stored, what it shows)
    let steps = [
        (
            "key=k&current=1",
            "v2",
            json!({ "swapped": true, "seen": "v1" }),
            "v2",
            "unchanged since current: swapped",
        ),
        (
            "key=k&current=1&set_between=x",
            "lost",
            json!({ "swapped": false, "latest": "x" }),
            "x",
            "changed after current: cas-failed, with a cas on the latest value",
        ),
        (
            "key=k&current=1&set_between=y&retry=1",
            "z",
            json!({ "swapped": false, "retried": true }),
            "z",
            "the cas that cas-failed returns expects the latest value",
        ),
        (
            "key=k",
            "w",
            json!({ "swapped": true, "seen": null }),
            "w",
            "without current, swap expects what cas.new saw",
        ),
        (
            "key=k&set_between=changed",
            "lost",
            json!({ "swapped": false, "latest": "changed" }),
            "changed",
            "what cas.new saw changed",
        ),
        (
            "key=fresh&current=1",
            "first",
            json!({ "swapped": true, "seen": null }),
            "first",
            "an absent key is inserted",
        ),
        (
            "key=gone&current=1&set_between=someone",
            "lost",
            json!({ "swapped": false, "latest": "someone" }),
            "someone",
            "a key seen absent and written since is not overwritten",
        ),
    ];
    for (query, value, reply, stored, shows) in steps {
        assert_eq!(kv("cas", query, value), reply, "{shows}");
        let key = query.split('&').next().unwrap();
        assert_eq!(kv("get", key, "")["value"], stored, "{shows}");
    }

    kv("delete", "key=k", "");
    assert_eq!(kv("claim", "key=k", "me"), json!({ "claimed": true }));
    assert_eq!(
        kv("claim", "key=k", "you"),
        json!({ "claimed": false, "holder": "me" })
    );
}

/// `count` claims of `key` (absent), spread over `hosts`, each pausing between reading the key
/// absent and swapping so that they overlap. Exactly one must win.
fn race_claims(hosts: &[&Host], store: &str, key: &str, count: usize) {
    let requests = (0..count)
        .map(|i| {
            let host = hosts[i % hosts.len()];
            let path = format!("/{store}/claim?key={key}&pause_ms=300");
            (host, path, format!("owner-{i}").into_bytes())
        })
        .collect();
    let answers = concurrently(requests);
    let winners: Vec<usize> = (0..count)
        .filter(|&i| answers[i]["claimed"] == true)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {answers:?}");
    let owner = format!("owner-{}", winners[0]);
    for answer in &answers {
        assert!(
            answer["claimed"] == true || answer["holder"] == owner.as_str(),
            "losers see the winner: {answers:?}"
        );
    }
    assert!(
        answers.iter().any(|a| a["cas_failed"] == true),
        "the claims overlapped (some swapped after reading the key absent): {answers:?}"
    );
    let stored = wkv(hosts[0], "", store, "get", &format!("key={key}"), b"");
    assert_eq!(stored["value"], owner.as_str());
}

/// `count` compare-and-swap increments of a decimal counter at `key`, spread over `hosts`, each
/// pausing between its first read and swap so that they overlap: no increment may be lost.
fn race_cas_adds(hosts: &[&Host], store: &str, key: &str, count: usize) {
    let requests = (0..count)
        .map(|i| {
            let host = hosts[i % hosts.len()];
            let path = format!("/{store}/cas-add?key={key}&delta=1&pause_ms=200");
            (host, path, vec![])
        })
        .collect();
    let answers = concurrently(requests);
    let stored = wkv(hosts[0], "", store, "get", &format!("key={key}"), b"");
    assert_eq!(stored["value"], count.to_string(), "{answers:?}");
    let attempts: u64 = answers
        .iter()
        .map(|a| a["attempts"].as_u64().unwrap())
        .sum();
    assert!(
        attempts > count as u64,
        "the swaps overlapped (some failed and retried): {answers:?}"
    );
}

#[test]
fn racing_instances_swap_atomically() {
    let (host, _config) = start();
    race_claims(&[&host], "default", "lock", 24);

    // A present key: of the swaps that saw "free", exactly one succeeds.
    wkv(&host, "", "default", "set", "key=slot", b"free");
    let requests = (0..24)
        .map(|i| {
            let path = "/default/cas?key=slot&current=1&pause_ms=300".to_string();
            (&host, path, format!("taken-{i}").into_bytes())
        })
        .collect();
    let answers = concurrently(requests);
    let from_free: Vec<&Value> = answers
        .iter()
        .filter(|a| a["swapped"] == true && a["seen"] == "free")
        .collect();
    assert_eq!(from_free.len(), 1, "{answers:?}");

    race_cas_adds(&[&host], "default", "counter", 32);
}

#[test]
fn hosts_sharing_a_store_file_swap_and_increment_atomically() {
    let (config_dir, config) = storage_config::storage_runtime_config();
    let first = Host::start(options(&config));
    let second = Host::start(options(&config));
    let hosts = [&first, &second];

    race_claims(&hosts, "extra", "lock", 24);
    race_cas_adds(&hosts, "extra", "counter", 32);

    let requests = (0..40)
        .map(|i| {
            (
                hosts[i % 2],
                "/extra/increment?key=hits&delta=1".to_string(),
                vec![],
            )
        })
        .collect();
    concurrently(requests);
    let stored = wkv(&second, "", "extra", "get", "key=hits", b"");
    assert_eq!(stored["bytes"], json!(40i64.to_le_bytes()));
    drop(config_dir);
}
