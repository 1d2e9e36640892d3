//! A minimal upstream HTTP server for outbound-HTTP tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Answers every request on a loopback port with a fixed status and body, counting requests,
/// connections, and the most requests it held at once.
///
/// Tests need a real destination to prove that an allowed outbound request really left the
/// component (and a denied one never arrived), and how many connections carried them.
pub struct UpstreamServer {
    port: u16,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
}

/// Requests between their head being read and their answer being written.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// How the server answers.
#[derive(Clone, Copy)]
struct Manner {
    keep_alive: bool,
    /// How long each request is held before its answer.
    hold: Duration,
}

impl UpstreamServer {
    /// Starts answering `status` with `body` on a free port, closing each connection after
    /// its response.
    pub fn start(status: u16, body: &str) -> Self {
        Self::serve(status, body, Manner::closing(Duration::ZERO))
    }

    /// Like [`UpstreamServer::start`], but holds each request for `hold` before answering,
    /// so that requests sent together overlap (see [`UpstreamServer::peak`]).
    pub fn slow(status: u16, body: &str, hold: Duration) -> Self {
        Self::serve(status, body, Manner::closing(hold))
    }

    /// Like [`UpstreamServer::start`], but keeps connections open for further requests
    /// (HTTP/1.1 keep-alive), as most servers do.
    pub fn keep_alive(status: u16, body: &str) -> Self {
        Self::serve(
            status,
            body,
            Manner {
                keep_alive: true,
                hold: Duration::ZERO,
            },
        )
    }

    fn serve(status: u16, body: &str, manner: Manner) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream server");
        let port = listener.local_addr().expect("upstream address").port();
        listener
            .set_nonblocking(true)
            .expect("nonblocking upstream listener");
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let load = Arc::new(Load::default());
        let stop = Arc::new(AtomicBool::new(false));
        let connection = if manner.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        let response: Arc<[u8]> = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: {connection}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into();
        let (thread_hits, thread_connections, thread_load, thread_stop) = (
            hits.clone(),
            connections.clone(),
            load.clone(),
            stop.clone(),
        );
        thread::spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        thread_connections.fetch_add(1, Ordering::SeqCst);
                        let (hits, load, response) =
                            (thread_hits.clone(), thread_load.clone(), response.clone());
                        thread::spawn(move || answer(stream, &response, &hits, &load, manner));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        UpstreamServer {
            port,
            hits,
            connections,
            load,
            stop,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many requests it has answered.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The most requests it has held at once, from reading a request's head to writing its
    /// answer (the count drops before the answer is written, so a client that waits for one
    /// answer before sending the next request never makes it 2).
    pub fn peak(&self) -> usize {
        self.load.peak.load(Ordering::SeqCst)
    }
}

impl Manner {
    fn closing(hold: Duration) -> Self {
        Self {
            keep_alive: false,
            hold,
        }
    }
}

/// Reads each request head (bodies are not needed by the tests) and writes the canned
/// response, until the client closes or, without keep-alive, after the first.
fn answer(mut stream: TcpStream, response: &[u8], hits: &AtomicUsize, load: &Load, manner: Manner) {
    let _ = stream.set_nonblocking(false);
    // Long enough that a pooled connection outlives the pauses of a loaded test machine; the
    // client's process ending closes it anyway.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let mut pending = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let end = loop {
            if let Some(at) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => pending.extend_from_slice(&buffer[..read]),
            }
        };
        pending.drain(..end);
        hits.fetch_add(1, Ordering::SeqCst);
        let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
        load.peak.fetch_max(now, Ordering::SeqCst);
        thread::sleep(manner.hold);
        load.now.fetch_sub(1, Ordering::SeqCst);
        if stream.write_all(response).is_err() || !manner.keep_alive {
            return;
        }
    }
}

impl Drop for UpstreamServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
