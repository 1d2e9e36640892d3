//! Native baseline for `bench/run.sh`: `GET /inventory/products/{sku}` and `GET /inventory/health`
//! served by plain tokio/hyper over the inventory SQLite file the Wasm app created, so the cost
//! of the Wasm path can be reported as a ratio measured side by side.
//!
//! It does per request what the component does: open the database, set the busy timeout, run
//! the same point query, answer the same JSON. Spin gives a component no state across
//! requests, so opening per request keeps the comparison about Wasm, not about pooling.
//!
//! Usage: `native-baseline <listen-addr> <inventory.db>`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use serde_json::json;

/// A product as the inventory API returns it.
#[derive(Serialize)]
struct Product {
    sku: String,
    name: String,
    price_cents: i64,
    available: i64,
    reserved: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(db)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: native-baseline <listen-addr> <inventory.db>");
    };
    let listen: SocketAddr = listen.parse().context("listen address")?;
    let db = Arc::new(PathBuf::from(db));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let db = db.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let db = db.clone();
                async move { Ok::<_, Infallible>(handle(&db, &req)) }
            });
            // A client hanging up mid-request is not the server's problem.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn handle(db: &std::path::Path, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/inventory/health" {
        return json_response(
            StatusCode::OK,
            &json!({"status": "ok", "service": "inventory"}),
        );
    }
    match path.strip_prefix("/inventory/products/") {
        Some(sku) if !sku.is_empty() => match product(db, sku) {
            Ok(Some(p)) => json_response(StatusCode::OK, &p),
            Ok(None) => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such product"),
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                &e.to_string(),
            ),
        },
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route"),
    }
}

fn product(db: &std::path::Path, sku: &str) -> rusqlite::Result<Option<Product>> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.query_row(
        "SELECT sku, name, price_cents, available, reserved FROM products WHERE sku = ?",
        [sku],
        |row| {
            Ok(Product {
                sku: row.get(0)?,
                name: row.get(1)?,
                price_cents: row.get(2)?,
                available: row.get(3)?,
                reserved: row.get(4)?,
            })
        },
    )
    .optional()
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}
