//! Native baseline for `bench/run.sh`: `GET /inventory/products/{sku}` and `GET /inventory/health`
//! served by plain tokio/hyper over the inventory SQLite file the Wasm app created, so the cost
//! of the Wasm path can be reported as a ratio measured side by side.
//!
//! It does per request what the component does: run the same point query on a connection with
//! the busy timeout set, answer the same JSON. Two ways to get that connection:
//! - `kept` (the default): one connection per thread, its statement prepared once. The host
//!   hands instances connections that earlier instances opened, with their prepared statements
//!   (`shop-host`'s `sqlite::pool`), so this is the like-for-like baseline: the comparison is
//!   about Wasm, not about connection reuse.
//! - `per-request`: opened and prepared anew for every request, as the component's own code
//!   reads (Spin gives it no state across requests), the way a naive server would run it.
//!
//! Usage: `native-baseline <listen-addr> <inventory.db> [kept|per-request]`

use std::cell::RefCell;
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
    let usage = "usage: native-baseline <listen-addr> <inventory.db> [kept|per-request]";
    let (Some(listen), Some(db)) = (args.next(), args.next()) else {
        anyhow::bail!(usage);
    };
    let connections = match args.next().as_deref() {
        None | Some("kept") => Connections::Kept,
        Some("per-request") => Connections::PerRequest,
        Some(other) => anyhow::bail!("unknown connection mode {other}; {usage}"),
    };
    let listen: SocketAddr = listen.parse().context("listen address")?;
    let db = Arc::new(Database {
        path: PathBuf::from(db),
        connections,
    });
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

/// The inventory file and how requests get a connection to it.
struct Database {
    path: PathBuf,
    connections: Connections,
}

enum Connections {
    Kept,
    PerRequest,
}

fn handle(db: &Database, req: &Request<Incoming>) -> Response<Full<Bytes>> {
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

thread_local! {
    /// This worker thread's connection, opened by its first request.
    static CONNECTION: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

fn product(db: &Database, sku: &str) -> rusqlite::Result<Option<Product>> {
    match db.connections {
        Connections::Kept => CONNECTION.with_borrow_mut(|slot| {
            let conn = match slot {
                Some(conn) => conn,
                None => slot.insert(open(&db.path)?),
            };
            read_product(conn, sku)
        }),
        // The statement is prepared anew too: it goes with the connection.
        Connections::PerRequest => read_product(&open(&db.path)?, sku),
    }
}

fn open(db: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn read_product(conn: &Connection, sku: &str) -> rusqlite::Result<Option<Product>> {
    conn.prepare_cached(
        "SELECT sku, name, price_cents, available, reserved FROM products WHERE sku = ?",
    )?
    .query_row([sku], |row| {
        Ok(Product {
            sku: row.get(0)?,
            name: row.get(1)?,
            price_cents: row.get(2)?,
            available: row.get(3)?,
            reserved: row.get(4)?,
        })
    })
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
