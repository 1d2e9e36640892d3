//! Test harness for the host and end-to-end tests.
//!
//! Everything here drives real processes on loopback: a `redis-server` ([`RedisServer`]), the
//! `shop-host` binary ([`Host`]), a `mosquitto` MQTT broker ([`MosquittoServer`]) and a tiny
//! upstream HTTP server ([`UpstreamServer`]), so tests exercise exactly what a user runs. Each
//! process gets a free port and is killed on drop.

mod components;
mod host;
mod http;
mod mosquitto_server;
mod postgres_server;
mod redis_server;
mod upstream;

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

pub use components::{require_components, workspace_root};
pub use host::{Host, HostOptions, StartFailure};
pub use http::{HttpClient, HttpResponse};
pub use mosquitto_server::MosquittoServer;
pub use postgres_server::PostgresServer;
pub use redis_server::RedisServer;
/// Re-exported so tests put their own files (runtime configs, databases) in temporary directories.
pub use tempfile;
pub use upstream::UpstreamServer;

/// A loopback port that was free a moment ago (the OS picked it; we release it immediately).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free loopback port")
}

/// Polls `check` every 100 ms until it yields `Some` or `timeout` has passed.
///
/// Asynchronous effects (Redis deliveries, reconnects) have no completion signal a test can wait
/// on, so tests poll for the observable outcome instead of sleeping a fixed time.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}
