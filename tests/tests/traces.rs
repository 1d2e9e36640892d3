//! Traces end to end: the real host exports its spans over OTLP/HTTP (protobuf) to a receiver in
//! this test, and one order's saga comes out as one trace whose parent links all resolve: the
//! request, every consumer's message handling, the call to the payment provider and the
//! provider's own request. Spans still buffered when the host stops are flushed, not lost.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;
use shop_e2e::{order_body, unique_key, unique_sku, Shop, SETTLE};
use testkit::eventually;

/// A trace id and span id of the test's own client span, sent as `traceparent`.
const TRACE_ID: &str = "5af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";
/// The trace of the last request, answered just before the host is stopped.
const LAST_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319d";

/// An OTLP/HTTP trace receiver on loopback that keeps every span it is sent. Hand-written on
/// std's listener, like the suite's other receivers: one `POST /v1/traces` per connection.
struct OtlpReceiver {
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl OtlpReceiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind OTLP receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                thread::spawn(move || receive(stream, &kept));
            }
        });
        OtlpReceiver { port, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far in `trace_id` (lower-case hex).
    fn trace(&self, trace_id: &str) -> Vec<Span> {
        let spans = self.spans.lock().expect("spans");
        spans
            .iter()
            .filter(|span| hex(&span.trace_id) == trace_id)
            .cloned()
            .collect()
    }
}

/// Reads one export request, keeps its spans and answers 200 (an empty export response).
fn receive(stream: TcpStream, kept: &Mutex<Vec<Span>>) {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let status = match ExportTraceServiceRequest::decode(body.as_slice()) {
        Ok(request) => {
            let spans = request
                .resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans);
            kept.lock().expect("spans").extend(spans);
            "200 OK"
        }
        Err(_) => "400 Bad Request",
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let _ = reader.get_mut().write_all(response.as_bytes());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A string attribute of a span.
fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// The spans the saga of one order must have, each found by its parent and name.
struct Saga<'a> {
    by_id: HashMap<String, &'a Span>,
}

impl<'a> Saga<'a> {
    fn new(spans: &'a [Span]) -> Self {
        Saga {
            by_id: spans.iter().map(|s| (hex(&s.span_id), s)).collect(),
        }
    }

    fn parent(&self, span: &Span) -> Option<&'a Span> {
        self.by_id.get(&hex(&span.parent_span_id)).copied()
    }

    /// Whether each component consumed a message of the saga: its execution span sits in a
    /// `<channel> receive` consumer span.
    fn consumers(&self) -> BTreeSet<String> {
        self.by_id
            .values()
            .filter(|s| s.name.starts_with("execute_wasm_component "))
            .filter(|s| {
                self.parent(s).is_some_and(|p| {
                    p.kind == SpanKind::Consumer as i32 && p.name.ends_with(" receive")
                })
            })
            .filter_map(|s| attribute(s, "component").map(str::to_string))
            .collect()
    }

    /// The provider's request (`POST /payment-sim/...`), served as the child of billing's
    /// outbound call span, which itself runs in billing's handling of a message.
    fn provider_call(&self) -> Option<(&'a Span, &'a Span)> {
        self.by_id.values().find_map(|server| {
            let is_provider = server.kind == SpanKind::Server as i32
                && server.name.starts_with("POST /payment-sim");
            let client = self.parent(server)?;
            let caller = self.parent(client)?;
            (is_provider
                && client.kind == SpanKind::Client as i32
                && attribute(caller, "component") == Some("billing"))
            .then_some((*server, client))
        })
    }
}

#[test]
fn one_order_is_one_trace_with_every_parent_exported() {
    let receiver = OtlpReceiver::start();
    // The host inherits this process's environment; this file holds one test, so setting it
    // here races with nothing.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint());
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "1000");
    let mut shop = Shop::start();
    let sku = unique_sku("TRACES");
    shop.put_product(&sku, 1250, 3);

    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let key = unique_key();
    let response = shop.send(
        "POST",
        "/orders",
        &[("idempotency-key", &key), ("traceparent", &traceparent)],
        &order_body("traces-customer", &[(&sku, 1)], "tok_visa"),
    );
    assert_eq!(response.status, 201, "POST /orders: {}", response.body);
    let id = response.json()["id"]
        .as_str()
        .expect("order id")
        .to_string();
    assert_eq!(shop.wait_final(&id)["status"], "confirmed");

    // Spans are exported as they end, so wait until the trace is complete.
    let problems = |spans: &[Span]| -> Vec<String> {
        let saga = Saga::new(spans);
        let mut problems = Vec::new();
        let consumers = saga.consumers();
        for component in ["billing", "inventory", "notifications", "orders"] {
            if !consumers.contains(component) {
                problems.push(format!("no message handled by {component}"));
            }
        }
        match saga.provider_call() {
            Some((_, call))
                if attribute(call, "url.full").is_some_and(|u| u.contains("/payment-sim/")) => {}
            Some((_, call)) => problems.push(format!("provider call without its URL: {call:?}")),
            None => problems.push("no provider request under billing's outbound call".into()),
        }
        // Events go out through outbound Redis (a script call publishing the page), in client
        // spans named by their command as Spin's.
        if !spans
            .iter()
            .any(|s| s.name == "EVAL" && s.kind == SpanKind::Client as i32)
        {
            problems.push("no outbound Redis EVAL span".into());
        }
        // The request's server span continues the client's span.
        let request = spans
            .iter()
            .find(|s| s.kind == SpanKind::Server as i32 && s.name == "POST /orders/...");
        match request {
            Some(r) if hex(&r.parent_span_id) == CLIENT_SPAN => {}
            Some(r) => problems.push(format!(
                "POST /orders has parent {}",
                hex(&r.parent_span_id)
            )),
            None => problems.push("no server span for POST /orders".into()),
        }
        // Every parent link resolves to an exported span of the trace, or to the client's span.
        for span in spans {
            let parent = hex(&span.parent_span_id);
            if parent != CLIENT_SPAN && !saga.by_id.contains_key(&parent) {
                problems.push(format!("{} has parent {parent}, never exported", span.name));
            }
        }
        // The functions' own log lines of this trace name the span they were written in.
        let logs = shop.host.logs();
        for line in logs
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|r| r["fields"]["trace_id"] == TRACE_ID)
        {
            let span_id = line["fields"]["span_id"].as_str().unwrap_or_default();
            if !saga.by_id.contains_key(span_id) {
                problems.push(format!("log line in a span never exported: {line}"));
            }
        }
        problems
    };
    let complete = eventually(SETTLE, || {
        let spans = receiver.trace(TRACE_ID);
        problems(&spans).is_empty().then_some(spans)
    });
    let Some(spans) = complete else {
        let spans = receiver.trace(TRACE_ID);
        let names: Vec<String> = spans
            .iter()
            .map(|s| format!("{} [{}]", s.name, attribute(s, "component").unwrap_or("-")))
            .collect();
        panic!(
            "trace {TRACE_ID} is not one complete saga: {:#?}\nspans: {names:#?}",
            problems(&spans)
        );
    };
    // The saga is one trace: every function that took part is in it, and nothing else is.
    let components: BTreeSet<&str> = spans
        .iter()
        .filter_map(|s| attribute(s, "component"))
        .collect();
    assert_eq!(
        components,
        BTreeSet::from([
            "billing",
            "inventory",
            "notifications",
            "orders",
            "payment-sim"
        ]),
    );

    // A request answered just before a graceful shutdown still has its span exported.
    let last = format!("00-{LAST_TRACE_ID}-{CLIENT_SPAN}-01");
    let response = shop.send(
        "GET",
        &format!("/orders/{id}"),
        &[("traceparent", &last)],
        &Value::Null,
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let status = shop.host.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "host exit: {status:?}");
    let flushed = receiver.trace(LAST_TRACE_ID);
    assert!(
        flushed
            .iter()
            .any(|s| s.name == "GET /orders/..." && hex(&s.parent_span_id) == CLIENT_SPAN),
        "the last request's span was lost at shutdown: {flushed:?}"
    );
}
