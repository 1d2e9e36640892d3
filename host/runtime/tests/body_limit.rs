//! `--max-request-body`: a body declared larger is answered 413 before any component runs; any
//! other body streams to the guest as it reads it, counted as it comes, and 413 once past the
//! limit.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use testkit::{eventually, free_port, Host, HttpClient};

#[test]
fn bodies_over_the_limit_get_413() {
    let host = Host::start(support::options("catch-all.toml").args(["--max-request-body", "1024"]));

    let response = host.post("/echo", &[b'a'; 1024]);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["body_len"], 1024);

    let response = host.post("/echo", &[b'a'; 4096]);
    assert_eq!(response.status, 413, "{}", response.body);

    let response = host.get("/echo");
    assert_eq!(response.status, 200, "the host keeps serving after a 413");
}

/// Sends `head`, then each of `parts` (a pause between them), and returns the whole answer.
fn exchange(host: &Host, head: &str, parts: &[&[u8]]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", host.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream.write_all(head.as_bytes()).expect("send head");
    for part in parts {
        std::thread::sleep(Duration::from_millis(50));
        if stream.write_all(part).is_err() {
            break; // the host answered and closed early
        }
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A chunked body declares no length: the limit is applied to the bytes as they stream.
#[test]
fn a_streamed_body_without_a_length_is_counted_as_it_comes() {
    let host = Host::start(support::options("catch-all.toml").args(["--max-request-body", "1024"]));
    let head =
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let chunk = format!("200\r\n{}\r\n", "a".repeat(0x200));
    let under = exchange(
        &host,
        head,
        &[chunk.as_bytes(), chunk.as_bytes(), b"0\r\n\r\n"],
    );
    assert!(under.starts_with("HTTP/1.1 200"), "1024 bytes: {under}");
    assert!(under.contains("\"body_len\":1024"), "{under}");
    let over = exchange(
        &host,
        head,
        &[
            chunk.as_bytes(),
            chunk.as_bytes(),
            chunk.as_bytes(),
            b"0\r\n\r\n",
        ],
    );
    assert!(over.starts_with("HTTP/1.1 413"), "1536 bytes: {over}");
    assert_eq!(host.get("/echo").status, 200, "the host keeps serving");
}

/// The guest is instantiated and reads the body while it is still arriving: the host does not
/// wait for (and buffer) the whole body first.
#[test]
fn the_guest_runs_while_the_body_is_still_arriving() {
    let metrics_port = free_port();
    let host = Host::start(
        support::options("catch-all.toml")
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")]),
    );
    let metrics = HttpClient::default();
    let instantiated = || {
        metrics
            .get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
            .body
            .lines()
            .any(|line| {
                line.starts_with("shop_host_instantiation_duration_seconds_count")
                    && line.contains("component=\"probe\"")
                    && line.ends_with(" 1")
            })
    };
    assert!(!instantiated(), "no request yet");

    let mut stream = TcpStream::connect(("127.0.0.1", host.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\nconnection: close\r\n\r\nhello")
        .expect("send head and half the body");
    let started = eventually(Duration::from_secs(10), || instantiated().then_some(()));
    assert!(
        started.is_some(),
        "the component was not instantiated before the body was complete; host output:\n{}",
        host.logs()
    );
    stream.write_all(b"world").expect("send the rest");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"body_len\":10"), "{answer}");
}
