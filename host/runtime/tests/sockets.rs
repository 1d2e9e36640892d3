//! wasi:sockets: TCP connections are allowed by `allowed_outbound_hosts` as in Spin (an IP and
//! port, a CIDR range, `{{ variable }}` templates), as the conformance suite's `tcp-sockets*`
//! tests check (fermyon/conformance-tests); any other is `access-denied`. UDP binds and
//! destinations need `udp://` (or `*://`) grants, as in Spin; name lookups are always refused.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

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

/// A UDP socket on 127.0.0.1 that the guest's datagrams are sent to.
fn udp_receiver() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the UDP receiver");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket
}

/// What the probe under `prefix` reports of sending `message` to `address` over UDP (bound to
/// `0.0.0.0:0` unless `bind` is given).
fn datagram(host: &Host, prefix: &str, address: &str, bind: Option<&str>, message: &str) -> Value {
    let mut path = format!("{prefix}/udp?address={address}");
    if let Some(bind) = bind {
        path.push_str(&format!("&bind={bind}"));
    }
    let response = host.post(&path, message.as_bytes());
    assert_eq!(response.status, 200, "POST {path}: {}", response.body);
    response.json()
}

/// The next datagram the receiver gets, if one comes within its timeout.
fn received(receiver: &UdpSocket) -> Option<String> {
    let mut buffer = [0; 1024];
    let (n, _) = receiver.recv_from(&mut buffer).ok()?;
    Some(String::from_utf8_lossy(&buffer[..n]).into_owned())
}

/// A UDP receiver, the host with `sockets.toml` granting sends to it, and its address.
fn udp_fixture() -> (UdpSocket, Host, String) {
    let receiver = udp_receiver();
    let port = receiver.local_addr().unwrap().port();
    let host = Host::start(
        support::options("sockets.toml")
            .variable("echo_port", "1")
            .variable("udp_port", &port.to_string()),
    );
    (receiver, host, format!("127.0.0.1:{port}"))
}

#[test]
fn udp_datagrams_reach_granted_destinations() {
    let (receiver, host, to) = udp_fixture();
    for prefix in ["/udp", "/udp-any-scheme", "/everything"] {
        let message = format!("beware the Jubjub bird {prefix}");
        let reply = datagram(&host, prefix, &to, None, &message);
        assert_eq!(reply, json!({ "sent": message.len() }), "{prefix}");
        assert_eq!(
            received(&receiver).as_deref(),
            Some(message.as_str()),
            "{prefix}"
        );
    }
}

#[test]
fn udp_is_refused_without_a_udp_grant_for_bind_and_destination() {
    let (receiver, host, to) = udp_fixture();
    let refused = [
        // A tcp:// grant is no udp:// grant.
        ("/udp-tcp-only", to.as_str(), None, "send"),
        ("/udp-other-port", to.as_str(), None, "send"),
        (
            "/udp",
            &to.replacen("127.0.0.1", "127.0.0.2", 1),
            None,
            "send",
        ),
        // Spin checks the bind address too: `0.0.0.0:0` must be granted, and only it is here.
        ("/udp-no-bind-grant", to.as_str(), None, "bind"),
        ("/udp", to.as_str(), Some("127.0.0.1:0"), "bind"),
        ("/none", to.as_str(), None, "bind"),
    ];
    for (prefix, address, bind, step) in refused {
        let reply = datagram(&host, prefix, address, bind, "the frumious Bandersnatch");
        assert_eq!(
            (reply["error"].as_str(), reply["step"].as_str()),
            (Some("PermissionDenied"), Some(step)),
            "{prefix} {address} {bind:?} must be refused: {reply}"
        );
    }
    assert_eq!(received(&receiver), None, "no refused datagram arrives");
    assert!(
        host.logs()
            .contains("socket denied by allowed_outbound_hosts"),
        "a refusal is logged"
    );
}

/// Spin gives guests no name lookups, whatever their grants (spinframework/spin#2181).
#[test]
fn ip_name_lookup_is_refused_whatever_the_grants() {
    let host = Host::start(support::options("sockets.toml").variable("echo_port", "1"));
    for prefix in ["/exact", "/everything", "/none"] {
        let path = format!("{prefix}/lookup?name=localhost");
        let response = host.get(&path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        let reply = response.json();
        // wasi-libc reports `permanent-resolver-failure` as EAI_FAIL ("Non-recoverable error");
        // a name that really failed to resolve would be EAI_NONAME.
        assert_eq!(
            reply,
            json!({
                "step": "lookup",
                "error": "Uncategorized",
                "detail": "failed to lookup address information: Non-recoverable error",
            }),
            "{prefix}"
        );
    }
}
