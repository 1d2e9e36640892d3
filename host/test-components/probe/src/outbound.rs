//! Outbound HTTP (wasi:http), outbound Redis (fermyon:spin/redis@2.0.0), TCP and UDP
//! (wasi:sockets) and name lookups (wasi:sockets/ip-name-lookup).

use serde_json::{json, Value};
use spin_sdk::http::{Method, Request, Response, SendError};
use spin_sdk::redis::{Connection, Error};

use crate::Query;

/// GETs `url` and reports its status and body, or the error (e.g. `HttpRequestDenied`).
pub(crate) async fn http(url: &str) -> Value {
    let request = Request::builder().method(Method::Get).uri(url).build();
    match spin_sdk::http::send::<_, Response>(request).await {
        Ok(response) => json!({
            "status": response.status(),
            "body": String::from_utf8_lossy(response.body()),
        }),
        Err(SendError::Http(code)) => json!({ "error": format!("{code:?}") }),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

/// Runs one Redis operation against `address`.
pub(crate) fn redis(query: &Query, payload: &[u8]) -> Value {
    let result = Connection::open(query.get("address")).and_then(|connection| {
        match query.get("op") {
            "publish" => connection
                .publish(query.get("channel"), payload)
                .map(|()| json!({ "ok": true })),
            "set" => connection
                .set(query.get("key"), payload)
                .map(|()| json!({ "ok": true })),
            "get" => connection.get(query.get("key")).map(|value| {
                json!({ "value": value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()) })
            }),
            op => Ok(json!({ "error": "unknown-op", "detail": op })),
        }
    });
    result.unwrap_or_else(|error| {
        let (variant, detail) = match error {
            Error::InvalidAddress => ("invalid-address", String::new()),
            Error::TooManyConnections => ("too-many-connections", String::new()),
            Error::TypeError => ("type-error", String::new()),
            Error::Other(detail) => ("other", detail),
        };
        json!({ "error": variant, "detail": detail })
    })
}

/// Connects to `address` over TCP, sends `message` and reads as many bytes back. An error is
/// reported with its `std::io::ErrorKind` (`PermissionDenied` for wasi:sockets' `access-denied`).
pub(crate) fn tcp(address: &str, message: &[u8]) -> Value {
    use std::io::{Read, Write};
    let exchange = || -> std::io::Result<Vec<u8>> {
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.write_all(message)?;
        let mut echoed = vec![0; message.len()];
        stream.read_exact(&mut echoed)?;
        Ok(echoed)
    };
    match exchange() {
        Ok(echoed) => json!({ "echoed": String::from_utf8_lossy(&echoed) }),
        Err(error) => {
            json!({ "error": format!("{:?}", error.kind()), "detail": error.to_string() })
        }
    }
}

/// Binds a UDP socket to `bind` (std's `UdpSocket`) and sends `message` to `address` in one
/// datagram; reports the bytes sent, or the error of the step that failed.
pub(crate) fn udp(bind: &str, address: &str, message: &[u8]) -> Value {
    let socket = match std::net::UdpSocket::bind(bind) {
        Ok(socket) => socket,
        Err(error) => return io_error("bind", &error),
    };
    match socket.send_to(message, address) {
        Ok(sent) => json!({ "sent": sent }),
        Err(error) => io_error("send", &error),
    }
}

fn io_error(step: &str, error: &std::io::Error) -> Value {
    json!({ "step": step, "error": format!("{:?}", error.kind()), "detail": error.to_string() })
}

/// Resolves `name` (std's `ToSocketAddrs`, over wasi:sockets/ip-name-lookup); reports the
/// addresses, or the error (wasi-libc turns `permanent-resolver-failure` into `EAI_FAIL`).
pub(crate) fn lookup(name: &str) -> Value {
    use std::net::ToSocketAddrs;
    match (name, 0).to_socket_addrs() {
        Ok(addresses) => {
            let addresses: Vec<String> = addresses.map(|a| a.ip().to_string()).collect();
            json!({ "addresses": addresses })
        }
        Err(error) => io_error("lookup", &error),
    }
}
