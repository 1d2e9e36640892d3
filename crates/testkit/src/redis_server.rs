//! A throwaway `redis-server` on a free loopback port.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port};

/// A `redis-server` child process without persistence; killed on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` (from `PATH`) on a free port and waits until it answers PING.
    pub fn start() -> Self {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.spawn();
        server
    }

    /// The port it listens on (kept across [`RedisServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `redis://` address for manifests and clients.
    pub fn address(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): connected clients see their connection drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts a fresh, empty one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Publishes `payload` on `channel`; returns how many subscribers received it.
    pub fn publish(&self, channel: &str, payload: &str) -> usize {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query(&mut self.connection())
            .expect("PUBLISH failed")
    }

    /// The string value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.connection())
            .expect("GET failed")
    }

    /// Number of subscribers of `channel` (PUBSUB NUMSUB), to know when a trigger listens.
    pub fn subscribers(&self, channel: &str) -> usize {
        let reply: (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut self.connection())
            .expect("PUBSUB NUMSUB failed");
        reply.1
    }

    /// A synchronous connection for arbitrary commands.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.address())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("cannot connect to test redis-server")
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run redis-server (is it installed and on PATH?)");
        self.child = Some(child);
        let address = self.address();
        let ready = eventually(Duration::from_secs(10), || {
            let client = redis::Client::open(address.as_str()).ok()?;
            let mut connection = client
                .get_connection_with_timeout(Duration::from_millis(500))
                .ok()?;
            redis::cmd("PING")
                .query::<String>(&mut connection)
                .ok()
                .filter(|pong| pong == "PONG")
        });
        assert!(
            ready.is_some(),
            "redis-server on {address} never answered PING"
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
