//! A core module (what `cargo build --target wasm32-unknown-unknown` or `wasm32-wasip1` makes,
//! with wit-bindgen's component-type section) runs as Spin runs it: made a component at load,
//! with the WASI preview 1 adapter when it imports `wasi_snapshot_preview1`. Spin's conformance
//! suite ships its tests as such modules.

use std::path::Path;
use std::time::Duration;

use testkit::{eventually, free_port, Host, HostOptions, HttpClient, RedisServer};

/// Spin's unversioned Redis handler, as spin-sdk's WIT declares it.
const WIT: &str = r#"
package fermyon:spin;

interface redis-types {
    enum error { success, error }
    type payload = list<u8>;
}

interface inbound-redis {
    use redis-types.{payload, error};
    handle-message: func(message: payload) -> result<_, error>;
}

world core-redis {
    export inbound-redis;
}
"#;

/// A handler that answers `ok` to every message: the result's discriminant (0) at a fixed
/// address, a bump allocator for the payload, and an unused WASI preview 1 import, as a
/// `wasm32-wasip1` build has.
const MODULE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get 3)))
    (local.get $at))
  (func (export "fermyon:spin/inbound-redis#handle-message") (param i32 i32) (result i32)
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.const 8)))
"#;

/// The module, with its component-type section, written to `dir/handler.wasm`.
fn write_module(dir: &Path) {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("core-redis.wit", WIT).unwrap();
    let world = resolve
        .select_world(&[package], Some("core-redis"))
        .unwrap();
    let mut module = wat::parse_str(MODULE).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    assert!(module.starts_with(b"\0asm\x01\0\0\0"), "a core module");
    std::fs::write(dir.join("handler.wasm"), module).unwrap();
}

#[test]
fn a_core_module_is_made_a_component_and_handles_messages() {
    let redis = RedisServer::start();
    let dir = testkit::tempfile::tempdir().unwrap();
    write_module(dir.path());
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        r#"spin_manifest_version = 2
[application]
name = "core-module"
[application.trigger.redis]
address = "{{ redis_address }}"
[variables]
redis_address = { required = true }
[[trigger.redis]]
channel = "core"
component = "handler"
[component.handler]
source = "handler.wasm"
"#,
    )
    .unwrap();
    let metrics_port = free_port();
    let host = Host::start(
        HostOptions::new(env!("CARGO_BIN_EXE_shop-host"), &manifest)
            .variable("redis_address", &redis.address())
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")]),
    );
    let wait = Duration::from_secs(20);
    let subscribed = eventually(wait, || (redis.subscribers("core") > 0).then_some(()));
    assert!(subscribed.is_some(), "{}", host.logs());
    redis.publish("core", "hello");
    let handled =
        r#"shop_host_redis_messages_total{component="handler",channel="core",outcome="handled"} 1"#;
    let metrics = HttpClient::default();
    let seen = eventually(wait, || {
        let text = metrics
            .get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
            .body;
        text.contains(handled).then_some(())
    });
    assert!(
        seen.is_some(),
        "the module never handled the message\n{}",
        host.logs()
    );
}

#[test]
fn a_component_passes_through_unchanged() {
    let component = wat::parse_str("(component)").unwrap();
    assert_eq!(
        shop_host::engine::componentize(component.clone()).unwrap(),
        component
    );
}
