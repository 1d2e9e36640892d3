//! fermyon:spin/sqlite@2.0.0 and spin:sqlite/sqlite@3.0.0: run a list of statements in order.
//!
//! Both interfaces define the same types in different packages, hence the macro.

use serde_json::{json, Value};

macro_rules! sqlite_runner {
    ($name:ident, $module:path) => {
        /// Opens `db` and executes each statement of the JSON list `body` on that one connection,
        /// so `BEGIN` ... `COMMIT`/`ROLLBACK` spans calls; one result (or error) per statement.
        pub(crate) fn $name(db: &str, body: &[u8]) -> Value {
            use $module as sql;
            let statements: Vec<String> = match serde_json::from_slice(body) {
                Ok(statements) => statements,
                Err(error) => return json!({ "error": "bad-request", "detail": error.to_string() }),
            };
            let connection = match sql::Connection::open(db) {
                Ok(connection) => connection,
                Err(error) => return error_json(error_variant!(sql, error)),
            };
            let results: Vec<Value> = statements
                .iter()
                .map(|statement| match connection.execute(statement, &[]) {
                    Ok(result) => {
                        let rows: Vec<Value> = result
                            .rows
                            .iter()
                            .map(|row| row.values.iter().map(value_json!(sql)).collect())
                            .collect();
                        json!({ "columns": result.columns, "rows": rows })
                    }
                    Err(error) => error_json(error_variant!(sql, error)),
                })
                .collect();
            json!({ "results": results })
        }
    };
}

macro_rules! error_variant {
    ($sql:ident, $error:expr) => {
        match $error {
            $sql::Error::NoSuchDatabase => ("no-such-database", String::new()),
            $sql::Error::AccessDenied => ("access-denied", String::new()),
            $sql::Error::InvalidConnection => ("invalid-connection", String::new()),
            $sql::Error::DatabaseFull => ("database-full", String::new()),
            $sql::Error::Io(detail) => ("io", detail),
        }
    };
}

macro_rules! value_json {
    ($sql:ident) => {
        |value: &$sql::Value| match value {
            $sql::Value::Integer(number) => json!(number),
            $sql::Value::Real(number) => json!(number),
            $sql::Value::Text(text) => json!(text),
            $sql::Value::Blob(bytes) => json!(String::from_utf8_lossy(bytes)),
            $sql::Value::Null => Value::Null,
        }
    };
}

fn error_json((variant, detail): (&str, String)) -> Value {
    json!({ "error": variant, "detail": detail })
}

sqlite_runner!(run_v2, spin_sdk::sqlite);
sqlite_runner!(run_v3, spin_sdk::sqlite3);
