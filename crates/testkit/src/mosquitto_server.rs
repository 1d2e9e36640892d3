//! A throwaway Mosquitto MQTT broker on a free loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port};

/// A private `mosquitto` (anonymous clients allowed, no persistence), configured in a temporary
/// directory; killed on drop.
pub struct MosquittoServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl MosquittoServer {
    /// Starts `mosquitto` (from `PATH`, or `/usr/sbin`, where Debian puts it) on a free port and
    /// waits until it accepts an MQTT connection. Panics, saying what to install, when there is
    /// no `mosquitto` binary.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for mosquitto.conf");
        let mut server = MosquittoServer {
            port: free_port(),
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    /// The port it listens on (kept across [`MosquittoServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An `mqtt://` address for `client_id` (rumqttc and Spin require one in the URL).
    pub fn address(&self, client_id: &str) -> String {
        format!("mqtt://127.0.0.1:{}?client_id={client_id}", self.port)
    }

    /// Kills the broker (SIGKILL): connected clients see their connection drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker and starts a fresh one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n",
                self.port
            ),
        )
        .expect("write mosquitto.conf");
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log"))
            .expect("create mosquitto.log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run mosquitto ({e}): install it (apt-get install mosquitto; \
                     scripts/test.sh does) so the MQTT tests have a broker"
                )
            });
        self.child = Some(child);
        let port = self.port;
        let ready = eventually(Duration::from_secs(10), || connack(port).then_some(()));
        if ready.is_none() {
            let log =
                std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default();
            panic!("mosquitto on 127.0.0.1:{port} never accepted an MQTT connection: {log}");
        }
    }
}

/// `mosquitto` on `PATH`, else Debian's `/usr/sbin/mosquitto` (not on a user's `PATH`).
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("mosquitto"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
}

/// Whether the broker on `port` answers an MQTT 3.1.1 CONNECT with a successful CONNACK (a
/// bound port alone does not mean the broker is serving).
fn connack(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    // CONNECT: protocol "MQTT" level 4, clean session, keep-alive 10 s, client id "ready".
    let connect = [
        0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 5, b'r', b'e', b'a', b'd', b'y',
    ];
    let mut reply = [0u8; 4];
    let answered = stream.write_all(&connect).is_ok() && stream.read_exact(&mut reply).is_ok();
    let _ = stream.write_all(&[0xe0, 0]); // DISCONNECT
    answered && reply == [0x20, 2, 0, 0]
}

impl Drop for MosquittoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
