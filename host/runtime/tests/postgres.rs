//! Outbound PostgreSQL (`spin:postgres@4.0.0`, `@3.0.0`, `fermyon:spin/postgres@2.0.0`) against
//! a real PostgreSQL: every type mapping both ways, nulls and arrays, the allowed-hosts check
//! and its exact error, and failed statements as errors the guest sees (not traps).

use serde_json::{json, Value};
use testkit::{require_components, Host, PostgresServer};

mod support;

struct Setup {
    host: Host,
    pg: PostgresServer,
}

fn start() -> Setup {
    start_with(&[])
}

/// [`start`] with further host arguments.
fn start_with(args: &[&str]) -> Setup {
    require_components(&["pg-probe"]);
    let pg = PostgresServer::start();
    let options = support::options("postgres.toml")
        .variable("pg_port", &pg.port().to_string())
        .args(args.iter().copied());
    Setup {
        host: Host::start(options),
        pg,
    }
}

impl Setup {
    /// Runs `ops` on one connection of the `pg` component with interface `version`.
    fn run(&self, version: u8, ops: Value) -> Value {
        self.run_at("/pg", &self.pg.connection_string(), version, ops)
    }

    fn run_at(&self, prefix: &str, address: &str, version: u8, ops: Value) -> Value {
        let body = json!({ "version": version, "address": address, "ops": ops });
        let response = self.host.post(prefix, body.to_string().as_bytes());
        assert_eq!(
            response.status,
            200,
            "{}\n{}",
            response.body,
            self.host.logs()
        );
        response.json()
    }

    /// The results of `ops`, which must all have succeeded.
    fn ok(&self, version: u8, ops: Value) -> Vec<Value> {
        let reply = self.run(version, ops);
        let results = reply["results"].as_array().cloned();
        let results = results.unwrap_or_else(|| panic!("open failed: {reply}"));
        for result in &results {
            assert!(result.get("error").is_none(), "{reply}");
        }
        results
    }
}

fn execute(sql: &str, params: Value) -> Value {
    json!({ "execute": sql, "params": params })
}

fn query(sql: &str, params: Value) -> Value {
    json!({ "query": sql, "params": params })
}

const TYPES_TABLE: &str = "CREATE TABLE t (
    id int4, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, s text, vc varchar(8),
    bp char(4), bin bytea, d date, tm time, ts timestamp, u uuid, j jsonb, n numeric,
    r4 int4range, r8 int8range, rn numrange, a4 int4[], a8 int8[], an numeric[], ast text[],
    iv interval)";

const COLUMNS: &str =
    "b, i2, i4, i8, f4, f8, s, vc, bp, bin, d, tm, ts, u, j, n, r4, r8, rn, a4, a8, an, ast, iv";

/// One value of every mapped type, as the guest passes it, in the order of `COLUMNS`.
fn every_type() -> Value {
    json!([
        { "boolean": true },
        { "int16": -32768 },
        { "int32": 2147483647 },
        { "int64": -9007199254740993i64 },
        { "floating32": 1.5 },
        { "floating64": 2.25 },
        { "str": "tëxt" },
        { "str": "vc" },
        { "str": "ab" },
        { "binary": [0, 1, 255] },
        { "date": [1901, 1, 2] },
        { "time": [14, 15, 16, 17000000] },
        { "datetime": [1999, 7, 12, 4, 3, 2, 1000000] },
        { "uuid": "fedcba98-fedc-fedc-fedc-fedcba987654" },
        { "jsonb": "{\"s\": \"world\", \"n\": [1, 2]}" },
        { "decimal": "123456789.123456789" },
        { "range-int32": [[30, "exclusive"], [40, "inclusive"]] },
        { "range-int64": [[123123123123i64, "inclusive"], null] },
        { "range-decimal": [["1.5", "exclusive"], ["2.5", "inclusive"]] },
        { "array-int32": [1, null, 3] },
        { "array-int64": [40000000000000i64, null] },
        { "array-decimal": ["100", null, "200.125"] },
        { "array-str": ["alice", null, "carol"] },
        { "interval": { "micros": 123456, "days": 10, "months": 200 } },
    ])
}

#[test]
fn every_type_round_trips_through_postgres_4() {
    let setup = start();
    setup.pg.psql(TYPES_TABLE);
    let placeholders: Vec<String> = (1..=24).map(|i| format!("${}", i + 1)).collect();
    let mut params = vec![json!({ "int32": 1 })];
    params.extend(every_type().as_array().unwrap().iter().cloned());
    let results = setup.ok(
        4,
        json!([
            execute(
                &format!(
                    "INSERT INTO t (id, {COLUMNS}) VALUES ($1, {})",
                    placeholders.join(", ")
                ),
                Value::Array(params),
            ),
            query(&format!("SELECT {COLUMNS} FROM t WHERE id = 1"), json!([])),
        ]),
    );
    assert_eq!(results[0], json!({ "ok": 1 }));
    let row = &results[1]["rows"][0];
    let expected = json!([
        { "boolean": true },
        { "int16": -32768 },
        { "int32": 2147483647 },
        { "int64": -9007199254740993i64 },
        { "floating32": 1.5 },
        { "floating64": 2.25 },
        { "str": "tëxt" },
        { "str": "vc" },
        // char(4) pads, as Postgres does.
        { "str": "ab  " },
        { "binary": [0, 1, 255] },
        { "date": [1901, 1, 2] },
        { "time": [14, 15, 16, 17000000] },
        { "datetime": [1999, 7, 12, 4, 3, 2, 1000000] },
        { "uuid": "fedcba98-fedc-fedc-fedc-fedcba987654" },
        // jsonb is stored normalised, and handed back as compact JSON.
        { "jsonb": "{\"n\":[1,2],\"s\":\"world\"}" },
        { "decimal": "123456789.123456789" },
        // Discrete ranges come back normalised to [inclusive, exclusive).
        { "range-int32": [[31, "inclusive"], [41, "exclusive"]] },
        { "range-int64": [[123123123123i64, "inclusive"], null] },
        // Continuous ones as written.
        { "range-decimal": [["1.5", "exclusive"], ["2.5", "inclusive"]] },
        { "array-int32": [1, null, 3] },
        { "array-int64": [40000000000000i64, null] },
        { "array-decimal": ["100", null, "200.125"] },
        { "array-str": ["alice", null, "carol"] },
        { "interval": { "micros": 123456, "days": 10, "months": 200 } },
    ]);
    assert_eq!(row, &expected);
    let columns: Vec<&str> = results[1]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "DbDataType::Boolean",
            "DbDataType::Int16",
            "DbDataType::Int32",
            "DbDataType::Int64",
            "DbDataType::Floating32",
            "DbDataType::Floating64",
            "DbDataType::Str",
            "DbDataType::Str",
            "DbDataType::Str",
            "DbDataType::Binary",
            "DbDataType::Date",
            "DbDataType::Time",
            "DbDataType::Datetime",
            "DbDataType::Uuid",
            "DbDataType::Jsonb",
            "DbDataType::Decimal",
            "DbDataType::RangeInt32",
            "DbDataType::RangeInt64",
            "DbDataType::RangeDecimal",
            "DbDataType::ArrayInt32",
            "DbDataType::ArrayInt64",
            "DbDataType::ArrayDecimal",
            "DbDataType::ArrayStr",
            "DbDataType::Interval",
        ]
    );
    // The values reached Postgres as the types they claim (not as text that happens to parse).
    assert_eq!(
        setup.pg.psql("SELECT i8, n, u, r4, ast, iv, bin, ts FROM t WHERE id = 1"),
        "-9007199254740993|123456789.123456789|fedcba98-fedc-fedc-fedc-fedcba987654|[31,41)|{alice,NULL,carol}|16 years 8 mons 10 days 00:00:00.123456|\\x0001ff|1999-07-12 04:03:02.001"
    );
}

#[test]
fn nulls_of_every_type_read_as_db_null_and_db_null_binds_anywhere() {
    let setup = start();
    setup.pg.psql(TYPES_TABLE);
    let nulls: Vec<Value> = (0..25).map(|_| json!({ "db-null": null })).collect();
    let placeholders: Vec<String> = (1..=25).map(|i| format!("${i}")).collect();
    let results = setup.ok(
        4,
        json!([
            execute(
                &format!(
                    "INSERT INTO t (id, {COLUMNS}) VALUES ({})",
                    placeholders.join(", ")
                ),
                Value::Array(nulls),
            ),
            query(&format!("SELECT {COLUMNS} FROM t"), json!([])),
        ]),
    );
    let row = results[1]["rows"][0].as_array().unwrap();
    assert_eq!(row.len(), 24);
    assert!(
        row.iter().all(|v| v == &json!({ "db-null": null })),
        "{row:?}"
    );
    assert_eq!(
        setup
            .pg
            .psql("SELECT count(*) FROM t WHERE b IS NULL AND iv IS NULL"),
        "1"
    );
}

#[test]
fn values_postgres_makes_read_like_spin() {
    let setup = start();
    let results = setup.ok(
        4,
        json!([
            query("SELECT 1::int8 AS one, 'x'::name AS other, now()::timestamptz IS NOT NULL AS has_now, '[]'::jsonb AS empty WHERE false", json!([])),
            query("SELECT 42::oid AS other, '1 day'::interval AS iv, '{1,2}'::int4[] AS arr, '1.50'::numeric AS n", json!([])),
            query("SELECT $1::int8 + 1 AS sum, $2::text AS same", json!([{ "int64": 41 }, { "str": "s" }])),
        ]),
    );
    // No row: no columns either (Spin infers them from the first row).
    assert_eq!(results[0], json!({ "columns": [], "rows": [] }));
    // Types without a mapping come back raw, binary form (an oid is 4 big-endian bytes).
    assert_eq!(
        results[1]["columns"][0],
        json!(["other", "DbDataType::Other(\"oid\")"])
    );
    assert_eq!(
        results[1]["rows"][0][0],
        json!({ "unsupported": [0, 0, 0, 42] })
    );
    assert_eq!(
        results[1]["rows"][0][1],
        json!({ "interval": { "micros": 0, "days": 1, "months": 0 } })
    );
    assert_eq!(results[1]["rows"][0][2], json!({ "array-int32": [1, 2] }));
    assert_eq!(results[1]["rows"][0][3], json!({ "decimal": "1.50" }));
    assert_eq!(
        results[2]["rows"][0],
        json!([{ "int64": 42 }, { "str": "s" }])
    );
}

#[test]
fn timestamp_parameters_are_seconds_since_the_epoch_and_timestamptz_fails_to_read() {
    let setup = start();
    setup.pg.psql("CREATE TABLE z (tz timestamptz)");
    let results = setup.run(
        4,
        json!([
            execute("INSERT INTO z VALUES ($1)", json!([{ "timestamp": 86400 }])),
            query("SELECT tz FROM z", json!([])),
        ]),
    );
    assert_eq!(results["results"][0], json!({ "ok": 1 }));
    assert_eq!(
        setup.pg.psql("SELECT extract(epoch FROM tz)::int8 FROM z"),
        "86400"
    );
    // Spin reads timestamptz as a naive date-time, which the driver refuses: a text error.
    let read = &results["results"][1];
    assert_eq!(read["error"], "query-failed", "{read}");
    let text = read["detail"]["text"].as_str().unwrap_or_default();
    assert!(text.contains("error deserializing column 0"), "{read}");
}

#[test]
fn a_denied_address_gets_spins_error_and_no_connection() {
    let setup = start();
    let address = setup.pg.connection_string();
    let reply = setup.run_at("/pg-closed", &address, 4, json!([]));
    assert_eq!(
        reply["open"],
        json!({
            "error": "connection-failed",
            "detail": format!("address postgres://127.0.0.1:{} is not permitted", setup.pg.port()),
        })
    );
    // An address without a port is checked with Postgres's default port 5432.
    let reply = setup.run_at("/pg-closed", "host=127.0.0.1 user=postgres", 4, json!([]));
    assert_eq!(
        reply["open"]["detail"],
        "address postgres://127.0.0.1 is not permitted"
    );
    // Unparsable strings and Unix sockets, as Spin refuses them.
    let reply = setup.run_at("/pg", "host=127.0.0.1 port=notanumber", 4, json!([]));
    assert_eq!(reply["open"]["error"], "connection-failed", "{reply}");
    assert_eq!(
        reply["open"]["detail"], "invalid connection string",
        "{reply}"
    );
    let reply = setup.run_at(
        "/pg",
        "host=/var/run/postgresql user=postgres",
        4,
        json!([]),
    );
    assert_eq!(
        reply["open"],
        json!({ "error": "connection-failed", "detail": "Unix sockets are not supported on WebAssembly" })
    );
    // The older interfaces get the same check.
    let reply = setup.run_at("/pg-closed", &address, 3, json!([]));
    let detail = reply["open"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("Error::ConnectionFailed(\"address postgres://127.0.0.1:"),
        "{reply}"
    );
    let reply = setup.run_at("/pg-closed", &address, 2, json!([]));
    assert!(
        reply["open"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("is not permitted"),
        "{reply}"
    );
}

#[test]
fn failed_statements_are_errors_the_guest_handles() {
    let setup = start();
    let results = setup.run(
        4,
        json!([
            execute("SELEC 1", json!([])),
            query("SELECT * FROM no_such_table", json!([])),
            query("SELECT $1::int4", json!([{ "uuid": "not-a-uuid" }])),
            execute("SELECT $1::int4", json!([{ "uuid": "not-a-uuid" }])),
            query("SELECT $1::int4", json!([{ "str": "text for an int" }])),
            // The connection is still usable after all that.
            query("SELECT 7::int4", json!([])),
        ]),
    );
    let results = results["results"].as_array().unwrap();
    let db_error = |i: usize| &results[i]["detail"]["db-error"];
    assert_eq!(results[0]["error"], "query-failed");
    assert_eq!(db_error(0)["code"], "42601", "{}", results[0]);
    assert_eq!(db_error(0)["severity"], "ERROR");
    assert_eq!(db_error(0)["message"], "syntax error at or near \"SELEC\"");
    assert_eq!(db_error(1)["code"], "42P01", "{}", results[1]);
    assert_eq!(
        db_error(1)["message"],
        "relation \"no_such_table\" does not exist"
    );
    // A parameter the host cannot convert: bad-parameter from query, value-conversion-failed
    // from execute (Spin's asymmetry), both naming the value.
    assert_eq!(results[2]["error"], "bad-parameter", "{}", results[2]);
    assert!(results[2]["detail"]
        .as_str()
        .unwrap()
        .starts_with("invalid UUID not-a-uuid"));
    assert_eq!(
        results[3]["error"], "value-conversion-failed",
        "{}",
        results[3]
    );
    // A parameter of the wrong type for its placeholder fails in the driver: a text error.
    assert_eq!(results[4]["error"], "query-failed", "{}", results[4]);
    let text = results[4]["detail"]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("kind: ToSql(0)") && text.contains("WrongType"),
        "{}",
        results[4]
    );
    assert_eq!(results[5]["rows"], json!([[{ "int32": 7 }]]));
    // The older interfaces get the error's text.
    let v3 = setup.run(3, json!([execute("SELEC 1", json!([]))]));
    let detail = v3["results"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("Error::QueryFailed(\"Error { kind: Db, cause: Some(DbError {"),
        "{v3}"
    );
    assert!(detail.contains("SqlState(E42601)"), "{v3}");
}

#[test]
fn older_interfaces_map_onto_the_same_client() {
    let setup = start();
    setup
        .pg
        .psql("CREATE TABLE o (i int4, s text, d date, u uuid)");
    setup
        .pg
        .psql("INSERT INTO o VALUES (1, 'one', '2000-01-02', gen_random_uuid())");
    let v3 = setup.ok(
        3,
        json!([
            execute(
                "INSERT INTO o (i, s, d) VALUES ($1, $2, $3)",
                json!([{ "int32": 2 }, { "str": "two" }, { "date": [2001, 2, 3] }])
            ),
            query("SELECT i, s, d, u FROM o ORDER BY i", json!([])),
        ]),
    );
    assert_eq!(v3[0], json!({ "ok": 1 }));
    assert_eq!(
        v3[1]["rows"][1],
        json!([
            "DbValue::Int32(2)",
            "DbValue::Str(\"two\")",
            "DbValue::Date((2001, 2, 3))",
            "DbValue::DbNull"
        ])
    );
    // uuid is not in 3.0.0: unsupported, column type other.
    assert_eq!(v3[1]["rows"][0][3], "DbValue::Unsupported");
    assert_eq!(v3[1]["columns"][3], json!(["u", "DbDataType::Other"]));
    let v2 = setup.run(
        2,
        json!([
            query("SELECT i, s, d FROM o ORDER BY i", json!([])),
            execute("INSERT INTO o (i) VALUES ($1)", json!([{ "uint32": 3 }])),
        ]),
    );
    let rows = &v2["results"][0]["rows"];
    assert_eq!(
        rows[0],
        json!([
            "DbValue::Int32(1)",
            "DbValue::Str(\"one\")",
            "DbValue::Unsupported"
        ])
    );
    assert_eq!(
        v2["results"][1]["detail"],
        "Error::ValueConversionFailed(\"Postgres does not support unsigned integers\")"
    );
}

#[test]
fn a_handle_keeps_its_connection_and_a_later_instance_gets_a_clean_one() {
    let setup = start();
    let results = setup.ok(
        4,
        json!([
            execute("SET application_name = 'dirty'", json!([])),
            execute("CREATE TEMP TABLE tmp (i int4)", json!([])),
            query(
                "SELECT pg_backend_pid(), current_setting('application_name')",
                json!([])
            ),
            query("SELECT pg_backend_pid()", json!([])),
        ]),
    );
    let pid = &results[2]["rows"][0][0];
    assert_eq!(pid, &results[3]["rows"][0][0], "one handle, one session");
    assert_eq!(results[2]["rows"][0][1], json!({ "str": "dirty" }));
    // The next request may get the same pooled session, but reset: no setting, no temp table.
    let next = setup.ok(
        4,
        json!([query(
            "SELECT current_setting('application_name'), to_regclass('pg_temp.tmp') IS NULL",
            json!([])
        ),]),
    );
    assert_eq!(
        next[0]["rows"][0],
        json!([{ "str": "" }, { "boolean": true }])
    );
}

/// Advisory locks held by any session of the test database, and its sessions left inside a
/// transaction, as another client sees them.
fn held_locks_and_open_transactions(setup: &Setup) -> String {
    setup.pg.psql(&format!(
        "SELECT (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
           WHERE l.locktype = 'advisory' AND a.datname = '{db}'), \
         (SELECT count(*) FROM pg_stat_activity \
           WHERE datname = '{db}' AND state LIKE 'idle in transaction%')",
        db = setup.pg.database()
    ))
}

#[test]
fn a_transaction_a_handle_leaves_open_is_rolled_back_before_the_next_one() {
    let setup = start();
    setup.ok(4, json!([execute("CREATE TABLE kept (i int4)", json!([]))]));
    // The guest begins, takes a transaction's advisory lock, writes and returns without COMMIT.
    setup.ok(
        4,
        json!([
            execute("BEGIN", json!([])),
            query("SELECT pg_advisory_xact_lock(7)", json!([])),
            execute("INSERT INTO kept VALUES (1)", json!([])),
        ]),
    );
    // The next handle (the same pooled session) starts outside any transaction: the write is
    // gone, and nobody holds the lock or sits in the old transaction.
    let next = setup.ok(4, json!([query("SELECT count(*) FROM kept", json!([]))]));
    assert_eq!(next[0]["rows"][0], json!([{ "int64": 0 }]));
    assert_eq!(held_locks_and_open_transactions(&setup), "0|0");
}

#[test]
fn a_connection_stopped_mid_statement_is_closed_not_pooled() {
    let setup = start_with(&["--instance-timeout-secs", "1"]);
    let body = json!({
        "version": 4,
        "address": setup.pg.connection_string(),
        "ops": [
            execute("BEGIN", json!([])),
            query("SELECT pg_advisory_xact_lock(7)", json!([])),
            query("SELECT pg_sleep(3)", json!([])),
        ],
    });
    let stopped = setup.host.post("/pg", body.to_string().as_bytes());
    assert_eq!(stopped.status, 500, "{}", stopped.body);
    let sleeper = setup.pg.psql(&format!(
        "SELECT pid FROM pg_stat_activity WHERE datname = '{}' AND query LIKE 'SELECT pg_sleep%'",
        setup.pg.database()
    ));
    assert!(
        !sleeper.is_empty(),
        "the cancelled statement is not running"
    );
    // Its session ends once the server notices its client went away (after the sleep); a
    // pooled connection would stay, holding the transaction and its lock.
    let gone = testkit::eventually(std::time::Duration::from_secs(30), || {
        let alive = setup.pg.psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {sleeper}"
        ));
        (alive == "0").then_some(())
    });
    assert!(gone.is_some(), "session {sleeper} is still open");
    assert_eq!(held_locks_and_open_transactions(&setup), "0|0");
    // The component goes on working with a fresh connection.
    let next = setup.ok(4, json!([query("SELECT 1", json!([]))]));
    assert_eq!(next[0]["rows"][0], json!([{ "int32": 1 }]));
}

#[test]
fn tls_follows_the_connection_strings_sslmode() {
    let setup = start();
    let (port, db) = (setup.pg.port(), setup.pg.database().to_string());
    let ssl_query = query(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        json!([]),
    );
    // disable: plain text even where the server offers TLS.
    let plain = setup.ok(4, json!([ssl_query]));
    assert_eq!(plain[0]["rows"], json!([[{ "boolean": false }]]));
    // require: TLS or nothing. The machine's server (Debian's) offers TLS with a certificate
    // for a name, never for 127.0.0.1, so the handshake fails there; a server without TLS
    // (the private one) is refused outright. Either way `open` fails as Spin's does.
    let address = format!("host=127.0.0.1 port={port} user=postgres dbname={db} sslmode=require");
    let reply = setup.run_at("/pg", &address, 4, json!([ssl_query]));
    assert_eq!(reply["open"]["error"], "connection-failed", "{reply}");
    let detail = reply["open"]["detail"].as_str().unwrap_or_default();
    if setup.pg.psql("SHOW ssl") == "on" {
        assert!(
            detail.contains("error performing TLS handshake")
                && detail.contains("certificate verify failed"),
            "{reply}"
        );
    } else {
        assert!(detail.contains("server does not support TLS"), "{reply}");
    }
}
