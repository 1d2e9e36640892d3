//! `probe`: a test component for the host's integration tests.
//!
//! Each route reports what the host did as JSON, including the exact error variant Spin's
//! interfaces define (`access-denied`, `no-such-store`, `HttpRequestDenied`, ...), so tests can
//! assert Spin semantics from outside:
//! - `/kv/<store>/<get|set|delete|exists|keys>?key=K` (value = request body)
//! - `/sqlite/<db>` and `/sqlite3/<db>`: body is a JSON list of statements run in order on one
//!   connection (fermyon:spin/sqlite@2.0.0 and spin:sqlite/sqlite@3.0.0)
//! - `/var/<name>`: a variable of this component
//! - `/outbound-http?url=U`: a GET to `U` (chaining when `U` is `http://<id>.spin.internal/...`)
//! - `/outbound-redis?address=A&op=<publish|set|get>&channel=C&key=K` (payload = body)
//! - `/mqtt/publish?address=A&topic=T&qos=<0|1|2>&username=U&password=P&keep_alive=S&count=N`:
//!   fermyon:spin/mqtt@2.0.0, the body published N times on one connection
//! - `/tcp?address=IP:PORT`: a wasi:sockets TCP connection (std's `TcpStream`) that sends the
//!   body and reads as many bytes back (an echo server answers them)
//! - `/udp?address=IP:PORT&bind=IP:PORT`: a wasi:sockets UDP socket (std's `UdpSocket`) bound
//!   to `bind` (default `0.0.0.0:0`) that sends the body to `address` in one datagram
//! - `/lookup?name=N`: the addresses of `N` (std's `ToSocketAddrs`, over
//!   wasi:sockets/ip-name-lookup), or the error
//! - `/sleep?ms=N`: answers after N milliseconds (in-flight requests during shutdown)
//! - `/counter`: increments a global of this instance (a fresh instance always answers 1)
//! - `/panic`: traps
//! - `/spin`: loops forever (the host's per-instance deadline must stop it)
//! - `/alloc?mb=N`: allocates and touches N MiB (the host's memory cap must stop it)
//! - `/residue?pages=N`: grows memory by N pages, counts the non-zero bytes found there, then
//!   fills them (a reused memory slot must come back zeroed)
//! - `/reply?bytes=N`: N bytes (`abc…z` repeated), sent by `shop_kit::reply`, which writes a
//!   body the stream takes at once before it sets the head; every other route's answer goes out
//!   the SDK's way, head first
//! - anything else: the method, URI (scheme and authority included), path, query, headers,
//!   environment and body length of the request
//!
//! Paths are taken below the component's route (`spin-path-info`).

mod kv;
mod mqtt;
mod outbound;
mod sqlite;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use spin_sdk::http::{IntoResponse, OutgoingResponse, Request, Response, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: Request, out: ResponseOutparam) {
    let path = path_info(&request);
    let query = Query::parse(request.query());
    if let ("/reply", Ok(bytes)) = (path.as_str(), query.get("bytes").parse()) {
        if let Err(e) = shop_kit::reply::send(out, alphabet(bytes)) {
            eprintln!("reply not sent: {e:#}");
        }
        return;
    }
    let mut response = route(&request, &path, &query).await;
    let body = std::mem::take(response.body_mut());
    match OutgoingResponse::try_from(response) {
        Ok(head) => {
            if let Err(e) = out.set_with_body(head, body).await {
                eprintln!("body not sent: {e}");
            }
        }
        Err(e) => eprintln!("response not sent: {e:#}"),
    }
}

/// The path below the component's route, so that a probe mounted anywhere (or reached through
/// chaining) offers the same operations.
fn path_info(request: &Request) -> String {
    match request
        .header("spin-path-info")
        .and_then(|value| value.as_str())
    {
        Some(path_info) => path_info.to_owned(),
        None => request.path().to_owned(),
    }
}

/// `len` bytes of the alphabet, repeated.
fn alphabet(len: usize) -> Response {
    let body: Vec<u8> = (b'a'..=b'z').cycle().take(len).collect();
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(body)
        .build()
}

async fn route(request: &Request, path: &str, query: &Query) -> Response {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let body = match segments.as_slice() {
        ["kv", store, op] => kv::run(store, op, query.get("key"), request.body()),
        ["sqlite", db] => sqlite::run_v2(db, request.body()),
        ["sqlite3", db] => sqlite::run_v3(db, request.body()),
        ["var", name] => variable(name),
        ["outbound-http"] => outbound::http(query.get("url")).await,
        ["outbound-redis"] => outbound::redis(query, request.body()),
        ["mqtt", "publish"] => mqtt::publish(query, request.body()),
        ["tcp"] => outbound::tcp(query.get("address"), request.body()),
        ["udp"] => outbound::udp(
            match query.get("bind") {
                "" => "0.0.0.0:0",
                bind => bind,
            },
            query.get("address"),
            request.body(),
        ),
        ["lookup"] => outbound::lookup(query.get("name")),
        ["sleep"] => sleep(query.get("ms")),
        ["counter"] => json!({ "count": COUNTER.fetch_add(1, Ordering::SeqCst) + 1 }),
        ["panic"] => panic!("probe asked to panic"),
        ["spin"] => spin_forever(),
        ["alloc"] => alloc(query.get("mb")),
        ["residue"] => residue(query.get("pages")),
        _ => echo(request),
    };
    json_response(body)
}

/// Lives as long as the instance: the host must never reuse one across requests.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn sleep(ms: &str) -> Value {
    let ms: u64 = ms.parse().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(ms));
    json!({ "slept_ms": ms })
}

/// Never returns and never yields to the host.
fn spin_forever() -> Value {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates `mb` MiB and writes every page, so the memory really grows.
fn alloc(mb: &str) -> Value {
    let mb: usize = mb.parse().unwrap_or(0);
    let block = vec![1u8; mb * 1024 * 1024];
    json!({ "allocated_mb": mb, "sum": std::hint::black_box(&block).iter().step_by(4096).map(|b| *b as u64).sum::<u64>() })
}

/// Grows linear memory by `pages` and reports what an earlier instance may have left there.
/// The grown pages belong to no Rust allocation, so they are read and written by address.
fn residue(pages: &str) -> Value {
    const PAGE: usize = 64 * 1024;
    let pages: usize = pages.parse().unwrap_or(1);
    let first = memory_grow(pages);
    if first == usize::MAX {
        return json!({ "error": "memory.grow refused" });
    }
    let start = (first * PAGE) as *mut u8;
    let mut nonzero = 0u64;
    for offset in 0..pages * PAGE {
        // SAFETY: the pages were just added by memory.grow and nothing else refers to them.
        unsafe {
            let byte = start.add(offset);
            if byte.read_volatile() != 0 {
                nonzero += 1;
            }
            byte.write_volatile(0xA5);
        }
    }
    json!({ "first_page": first, "pages": pages, "nonzero": nonzero })
}

/// `memory.grow` on memory 0: the previous size in pages, or `usize::MAX` when refused.
#[cfg(target_arch = "wasm32")]
fn memory_grow(pages: usize) -> usize {
    core::arch::wasm32::memory_grow(0, pages)
}

/// Built natively (the workspace's tests), there is no linear memory to grow.
#[cfg(not(target_arch = "wasm32"))]
fn memory_grow(_pages: usize) -> usize {
    usize::MAX
}

/// The request as the component saw it.
fn echo(request: &Request) -> Value {
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .map(|(name, value)| {
            let value = value.as_str().unwrap_or("<binary>");
            (name.to_ascii_lowercase(), Value::from(value))
        })
        .collect();
    json!({
        "method": request.method().to_string(),
        "uri": request.uri(),
        "path": request.path(),
        "query": request.query(),
        "headers": headers,
        "env": std::env::vars()
            .map(|(name, value)| (name, Value::from(value)))
            .collect::<serde_json::Map<String, Value>>(),
        "body_len": request.body().len(),
    })
}

fn variable(name: &str) -> Value {
    use spin_sdk::variables::Error;
    match spin_sdk::variables::get(name) {
        Ok(value) => json!({ "value": value }),
        Err(error) => {
            let (variant, detail) = match error {
                Error::InvalidName(detail) => ("invalid-name", detail),
                Error::Undefined(detail) => ("undefined", detail),
                Error::Provider(detail) => ("provider", detail),
                Error::Other(detail) => ("other", detail),
            };
            json!({ "error": variant, "detail": detail })
        }
    }
}

/// Query-string parameters (percent-decoded).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        Query(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_default()
    }
}

/// Errors are reported in the body with 200 so tests tell a host failure (5xx) from a reported one.
fn json_response(body: Value) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
        .into_response()
}
