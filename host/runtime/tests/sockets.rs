//! wasi:sockets: TCP connections are allowed by `allowed_outbound_hosts` as in Spin (an IP and
//! port, a CIDR range, `{{ variable }}` templates), as the conformance suite's `tcp-sockets*`
//! tests check (fermyon/conformance-tests); any other is `access-denied`.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::{json, Value};
use testkit::Host;

/// A TCP echo server on 127.0.0.1 (its port), serving connections until the test ends.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buffer = [0; 1024];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// What the probe under `prefix` reports of a TCP exchange with `address`.
fn exchange(host: &Host, prefix: &str, address: &str) -> Value {
    let path = format!("{prefix}/tcp?address={address}");
    let response = host.post(&path, b"So rested he by the Tumtum tree");
    assert_eq!(response.status, 200, "POST {path}: {}", response.body);
    response.json()
}

#[test]
fn tcp_connections_follow_allowed_outbound_hosts() {
    let port = echo_server();
    let host =
        Host::start(support::options("sockets.toml").variable("echo_port", &port.to_string()));
    let echo = format!("127.0.0.1:{port}");
    let echoed = json!({ "echoed": "So rested he by the Tumtum tree" });
    for prefix in ["/exact", "/range", "/range-variables"] {
        assert_eq!(exchange(&host, prefix, &echo), echoed, "{prefix}");
    }
    for prefix in ["/other-ip", "/other-port", "/http-only", "/none"] {
        let reply = exchange(&host, prefix, &echo);
        assert_eq!(
            reply["error"], "PermissionDenied",
            "{prefix} must be refused: {reply}"
        );
    }
    let reply = exchange(&host, "/range", &format!("127.0.1.1:{port}"));
    assert_eq!(
        reply["error"], "PermissionDenied",
        "outside the range: {reply}"
    );
    assert!(
        host.logs()
            .contains("socket denied by allowed_outbound_hosts"),
        "a refusal is logged"
    );
}

/// No name lookups (Spin gives guests none): a name fails before any connection.
#[test]
fn names_are_not_resolved() {
    let port = echo_server();
    let host =
        Host::start(support::options("sockets.toml").variable("echo_port", &port.to_string()));
    let reply = exchange(&host, "/exact", &format!("localhost:{port}"));
    assert!(reply.get("error").is_some(), "{reply}");
    assert!(reply.get("echoed").is_none(), "{reply}");
}
