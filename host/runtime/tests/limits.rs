//! Per-instance limits: a guest that never returns is stopped at the deadline with a 500, and
//! one that grows its memory past `max_instance_memory` traps with a 500; the host serves on.

mod support;

use std::time::{Duration, Instant};

use testkit::tempfile::TempDir;
use testkit::Host;

#[test]
fn a_runaway_instance_is_stopped_at_the_deadline_with_500() {
    let options = support::options("catch-all.toml").args(["--instance-timeout-secs", "1"]);
    let host = Host::start(options);
    let started = Instant::now();
    let response = host.get("/spin");
    let took = started.elapsed();
    assert_eq!(response.status, 500, "{}", response.body);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "stopped after {took:?}, not at the 1 s deadline"
    );
    let response = host.get("/echo");
    assert_eq!(
        response.status, 200,
        "the host must keep serving: {}",
        response.body
    );
}

#[test]
fn an_instance_over_its_memory_cap_gets_500() {
    let dir = TempDir::new().expect("temp dir");
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        format!("max_instance_memory = {}\n", 32 * 1024 * 1024),
    )
    .expect("write runtime config");
    let host = Host::start(support::options("catch-all.toml").runtime_config(&config));
    let response = host.get("/alloc?mb=4");
    assert_eq!(response.status, 200, "under the cap: {}", response.body);
    assert_eq!(response.json()["allocated_mb"], 4);
    let response = host.get("/alloc?mb=64");
    assert_eq!(response.status, 500, "over the cap: {}", response.body);
    let response = host.get("/alloc?mb=4");
    assert_eq!(
        response.status, 200,
        "the host must keep serving: {}",
        response.body
    );
}
