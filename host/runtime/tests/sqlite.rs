//! fermyon:spin/sqlite@2.0.0 and spin:sqlite/sqlite@3.0.0: statements, types, transactions,
//! databases per label and access checks.

mod storage_config;
mod support;

use serde_json::{json, Value};
use testkit::Host;

/// Runs `statements` in order on one connection through the probe; returns one result each.
fn sql(host: &Host, route: &str, statements: &[&str]) -> Vec<Value> {
    let body = serde_json::to_vec(statements).expect("statements as JSON");
    let response = host.post(route, &body);
    assert_eq!(response.status, 200, "POST {route}: {}", response.body);
    let reply = response.json();
    let results = reply["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results from {route}: {reply}"))
        .clone();
    assert_eq!(results.len(), statements.len(), "{reply}");
    results
}

fn rows(result: &Value) -> &Value {
    assert!(result.get("error").is_none(), "statement failed: {result}");
    &result["rows"]
}

fn start() -> (Host, testkit::tempfile::TempDir) {
    let (config_dir, config) = storage_config::storage_runtime_config();
    let host = Host::start(support::options("storage.toml").runtime_config(config));
    (host, config_dir)
}

#[test]
fn statements_return_typed_rows() {
    let (mut host, _config) = start();
    let results = sql(
        &host,
        "/sqlite/default",
        &[
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, n TEXT)",
            "INSERT INTO t VALUES (1, 2.5, 'x', NULL), (2, -1.0, 'y', 'z')",
            "SELECT i, r, s, n FROM t ORDER BY i",
        ],
    );
    assert_eq!(results[2]["columns"], json!(["i", "r", "s", "n"]));
    assert_eq!(
        rows(&results[2]),
        &json!([[1, 2.5, "x", null], [2, -1.0, "y", "z"]])
    );
    let file = host.state_dir().join("sqlite_db.db");
    assert!(
        file.is_file(),
        "Spin keeps the default database in {}",
        file.display()
    );

    host.restart();
    let results = sql(&host, "/sqlite/default", &["SELECT count(*) FROM t"]);
    assert_eq!(rows(&results[0]), &json!([[2]]), "data survives a restart");
}

#[test]
fn transactions_span_calls_within_a_request() {
    let (host, _config) = start();
    sql(&host, "/sqlite/default", &["CREATE TABLE t (v TEXT)"]);

    let results = sql(
        &host,
        "/sqlite/default",
        &[
            "BEGIN",
            "INSERT INTO t VALUES ('rolled back')",
            "SELECT count(*) FROM t",
            "ROLLBACK",
            "SELECT count(*) FROM t",
        ],
    );
    assert_eq!(
        rows(&results[2]),
        &json!([[1]]),
        "visible inside the transaction"
    );
    assert_eq!(rows(&results[4]), &json!([[0]]), "gone after ROLLBACK");

    sql(
        &host,
        "/sqlite/default",
        &["BEGIN", "INSERT INTO t VALUES ('committed')", "COMMIT"],
    );
    sql(
        &host,
        "/sqlite/default",
        &["BEGIN", "INSERT INTO t VALUES ('never committed')"],
    );
    let results = sql(&host, "/sqlite/default", &["SELECT v FROM t"]);
    assert_eq!(
        rows(&results[0]),
        &json!([["committed"]]),
        "a commit persists; a transaction left open when the instance ends does not"
    );
}

#[test]
fn errors_and_access_checks() {
    let (host, _config) = start();
    let results = sql(&host, "/sqlite/default", &["SELEC nonsense"]);
    assert_eq!(results[0]["error"], "io", "{}", results[0]);
    assert!(
        !results[0]["detail"].as_str().unwrap_or_default().is_empty(),
        "the io error carries SQLite's message: {}",
        results[0]
    );

    for route in [
        "/other/sqlite/extra",
        "/sqlite/ungranted",
        "/sqlite/never_defined",
    ] {
        let response = host.post(route, b"[\"SELECT 1\"]");
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(
            response.json()["error"],
            "access-denied",
            "{route}: {}",
            response.body
        );
    }
}

#[test]
fn databases_are_isolated_by_label() {
    let (host, config) = start();
    sql(
        &host,
        "/sqlite/extra",
        &[
            "CREATE TABLE only_extra (v TEXT)",
            "INSERT INTO only_extra VALUES ('e')",
        ],
    );
    let results = sql(&host, "/sqlite/default", &["SELECT v FROM only_extra"]);
    assert_eq!(
        results[0]["error"], "io",
        "default must not see extra's table: {}",
        results[0]
    );
    let results = sql(&host, "/sqlite/extra", &["SELECT v FROM only_extra"]);
    assert_eq!(rows(&results[0]), &json!([["e"]]));
    assert!(
        config.path().join("extra.db").is_file(),
        "runtime config path of extra is used"
    );
}

#[test]
fn sqlite_v3_interface_shares_the_database() {
    let (host, _config) = start();
    let results = sql(
        &host,
        "/sqlite3/default",
        &[
            "CREATE TABLE v3 (i INTEGER, s TEXT)",
            "INSERT INTO v3 VALUES (7, 'seven')",
            "SELECT i, s FROM v3",
        ],
    );
    assert_eq!(rows(&results[2]), &json!([[7, "seven"]]));
    let results = sql(&host, "/sqlite/default", &["SELECT s FROM v3"]);
    assert_eq!(
        rows(&results[0]),
        &json!([["seven"]]),
        "v2 sees what v3 wrote"
    );
    let response = host.post("/other/sqlite3/extra", b"[\"SELECT 1\"]");
    assert_eq!(
        response.json()["error"],
        "access-denied",
        "{}",
        response.body
    );
}

/// Spin's in-process SQLite (`crates/sqlite-inproc`): a guest may `ATTACH` another file, or
/// `VACUUM INTO` one, only where the runtime config sets `allow_attach_file = true` for the
/// database; otherwise the statement fails as an `io` error with SQLite's message ("not
/// authorized" as `ATTACH` is prepared, "authorization denied" as `VACUUM INTO` runs). A new
/// temporary database (`''`) or `':memory:'` may always be attached. Extensions never load.
#[test]
fn attaching_files_needs_allow_attach_file() {
    let (host, config) = start();
    let other = config.path().join("other.db");
    let copy = config.path().join("copy.db");
    let attach = format!("ATTACH '{}' AS other", other.display());
    let vacuum_into = format!("VACUUM INTO '{}'", copy.display());
    let not_authorized = json!({ "error": "io", "detail": "not authorized" });

    for route in ["/sqlite/default", "/sqlite3/extra"] {
        let results = sql(
            &host,
            route,
            &[
                &attach,
                &vacuum_into,
                "ATTACH ':memory:' AS scratch",
                "ATTACH '' AS temporary",
                "VACUUM",
                "SELECT load_extension('libm.so')",
            ],
        );
        assert_eq!(results[0], not_authorized, "{route}: ATTACH of a file");
        assert_eq!(
            results[1],
            json!({ "error": "io", "detail": "authorization denied" }),
            "{route}: VACUUM INTO"
        );
        rows(&results[2]);
        rows(&results[3]);
        rows(&results[4]);
        assert_eq!(results[5], not_authorized, "{route}: load_extension");
    }
    assert!(
        !other.exists(),
        "a refused ATTACH created {}",
        other.display()
    );
    assert!(
        !copy.exists(),
        "a refused VACUUM INTO wrote {}",
        copy.display()
    );

    let results = sql(
        &host,
        "/sqlite/attaching",
        &[
            &attach,
            "CREATE TABLE other.t (v TEXT)",
            "INSERT INTO other.t VALUES ('attached')",
            &vacuum_into,
        ],
    );
    for result in &results {
        rows(result);
    }
    assert!(copy.is_file(), "VACUUM INTO wrote the copy");
    let results = sql(
        &host,
        "/sqlite3/attaching",
        &[&attach, "SELECT v FROM other.t"],
    );
    assert_eq!(
        rows(&results[1]),
        &json!([["attached"]]),
        "the attached file kept the row"
    );
    assert!(other.is_file());
}

/// A statement still running at the instance's deadline is interrupted by SQLite (the guest
/// gets `io("interrupted")`, or the instance is stopped right after): it does not keep its
/// thread, and the database serves the next request.
#[test]
fn a_runaway_statement_is_interrupted_at_the_instance_deadline() {
    let (_config_dir, config) = storage_config::storage_runtime_config();
    let host = Host::start(
        support::options("storage.toml")
            .runtime_config(config)
            .args(["--instance-timeout-secs", "1"]),
    );
    let runaway = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                   WHERE i < 10000000000) SELECT count(*) FROM n";
    let body = serde_json::to_vec(&[runaway]).expect("statements as JSON");
    let started = std::time::Instant::now();
    let response = host.post("/sqlite/default", &body);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(8),
        "the statement ran for {took:?}, past the 1 s deadline"
    );
    if response.status == 200 {
        assert_eq!(
            response.json()["results"][0],
            json!({ "error": "io", "detail": "interrupted" })
        );
    } else {
        assert_eq!(response.status, 500, "{}", response.body);
    }
    let results = sql(&host, "/sqlite/default", &["SELECT 1"]);
    assert_eq!(rows(&results[0]), &json!([[1]]));
}
