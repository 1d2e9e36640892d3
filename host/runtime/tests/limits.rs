//! Limits: a guest that never returns, or waits in a host call past its deadline, is stopped
//! there with a 500, one that grows its memory past `max_instance_memory` (1 GiB by default)
//! traps with a 500, oversized request heads get 431, and a
//! client that never finishes its request head is cut off; the host serves on through all of it.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
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

/// The deadline is on the wall clock and covers host calls: a guest asleep in
/// `wasi:clocks` (no Wasm running, so no epoch check) is stopped at it too.
#[test]
fn a_guest_waiting_in_a_host_call_is_stopped_at_the_deadline_with_500() {
    let options = support::options("catch-all.toml").args(["--instance-timeout-secs", "1"]);
    let host = Host::start(options);
    let started = Instant::now();
    let response = host.get("/sleep?ms=15000");
    let took = started.elapsed();
    assert_eq!(response.status, 500, "{}", response.body);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "stopped after {took:?}, not at the 1 s deadline"
    );
    // The log line may follow the response: waited for, not expected at once.
    let named = testkit::eventually(Duration::from_secs(10), || {
        host.logs().contains("ran past its deadline").then_some(())
    });
    assert!(
        named.is_some(),
        "the failure names the deadline: {}",
        host.logs()
    );
    let response = host.get("/sleep?ms=10");
    assert_eq!(
        response.status, 200,
        "the host keeps serving: {}",
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

/// `--max-instance-memory` (as `spin up`'s) beats the runtime config's `max_instance_memory`.
#[test]
fn the_command_line_memory_cap_beats_the_runtime_config() {
    let dir = TempDir::new().expect("temp dir");
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        format!("max_instance_memory = {}\n", 512 * 1024 * 1024),
    )
    .expect("write runtime config");
    let cap = (32 * 1024 * 1024).to_string();
    let options = support::options("catch-all.toml")
        .runtime_config(&config)
        .args(["--max-instance-memory", &cap]);
    let host = Host::start(options);
    assert_eq!(host.get("/alloc?mb=4").status, 200);
    let response = host.get("/alloc?mb=64");
    assert_eq!(
        response.status, 500,
        "over the flag's cap: {}",
        response.body
    );
    let logged = testkit::eventually(Duration::from_secs(5), || {
        host.logs()
            .contains("instance memory limit exceeded")
            .then_some(())
    });
    assert!(
        logged.is_some(),
        "the refused growth is logged, as Spin does: {}",
        host.logs()
    );
}

/// With no cap configured, an instance still may not grow a memory past 1 GiB (this host's
/// default, whichever allocator the engine got).
#[test]
fn without_a_configured_cap_a_memory_stops_at_one_gibibyte() {
    let host = Host::start(support::options("catch-all.toml"));
    assert_eq!(
        host.get("/alloc?mb=64").status,
        200,
        "well under the default"
    );
    let response = host.get("/alloc?mb=1100");
    assert_eq!(response.status, 500, "over 1 GiB: {}", response.body);
    assert_eq!(
        host.get("/alloc?mb=4").status,
        200,
        "the host keeps serving"
    );
}

/// Sends a raw request head and returns the status line of the answer.
fn status_line(host: &Host, head: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", host.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(head.as_bytes()).expect("send head");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn oversized_request_heads_get_431_and_change_nothing() {
    let host = Host::start(support::options("catch-all.toml"));
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let line = status_line(
        &host,
        &format!("GET /echo HTTP/1.1\r\nhost: x\r\n{many}\r\n"),
    );
    assert!(line.contains(" 431"), "200 headers: {line}");
    let huge = "v".repeat(1024 * 1024);
    let line = status_line(
        &host,
        &format!("GET /echo HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n"),
    );
    assert!(line.contains(" 431"), "a 1 MiB header: {line}");
    assert_eq!(host.get("/echo").status, 200, "the host must keep serving");
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    let host = Host::start(support::options("catch-all.toml"));
    let mut slow = TcpStream::connect(("127.0.0.1", host.port())).expect("connect");
    slow.write_all(b"GET /echo HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .expect("send part of a head");
    let started = Instant::now();
    // Others are served while the slow client holds its connection.
    assert_eq!(host.get("/echo").status, 200, "served beside a slow client");
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut answer = Vec::new();
    let closed = slow.read_to_end(&mut answer).is_ok();
    let took = started.elapsed();
    assert!(closed, "the host must close the connection, not hold it");
    assert!(
        took < Duration::from_secs(45),
        "cut off after {took:?}, expected the 30 s header timeout"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a half-sent head gets no answer or 408: {answer}"
    );
}
