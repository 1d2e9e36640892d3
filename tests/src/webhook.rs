//! A real HTTP webhook receiver on loopback that can be told to fail, for the notification
//! delivery fault tests: it refuses with 503 while failing and records what it accepted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

#[derive(Default)]
struct State {
    failing: AtomicBool,
    refused: AtomicUsize,
    accepted: Mutex<Vec<Value>>,
    /// The `Idempotency-Key` of each accepted delivery, in the same order.
    keys: Mutex<Vec<String>>,
    stopped: AtomicBool,
}

/// Answers every POST with 200 (recording its JSON body) or, while failing, 503.
pub struct WebhookReceiver {
    port: u16,
    state: Arc<State>,
}

impl WebhookReceiver {
    /// Starts listening on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook receiver");
        let port = listener.local_addr().expect("webhook address").port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stopped.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(stream) = stream {
                    let state = shared.clone();
                    thread::spawn(move || answer(stream, &state));
                }
            }
        });
        WebhookReceiver { port, state }
    }

    /// `http://127.0.0.1:<port>`, for `allowed_outbound_hosts`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes it answer 503 (`true`) or 200 (`false`) from now on.
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::Relaxed);
    }

    /// How many deliveries it refused.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// The bodies of the deliveries it accepted, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.state.accepted.lock().unwrap().clone()
    }

    /// The `Idempotency-Key` header of each accepted delivery (empty when absent), in the
    /// order of [`WebhookReceiver::accepted`].
    pub fn idempotency_keys(&self) -> Vec<String> {
        self.state.keys.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request (head and `content-length` body) and answers it.
fn answer(stream: TcpStream, state: &State) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut length = 0;
    let mut key = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':') {
                    if name.trim().eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    } else if name.trim().eq_ignore_ascii_case("idempotency-key") {
                        key = value.trim().to_string();
                    }
                }
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let status = if state.failing.load(Ordering::Relaxed) {
        state.refused.fetch_add(1, Ordering::Relaxed);
        "503 Service Unavailable"
    } else {
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        state.accepted.lock().unwrap().push(value);
        state.keys.lock().unwrap().push(key);
        "200 OK"
    };
    let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = (&stream).write_all(response.as_bytes());
}
