//! The SQLite adapter: Spin's `sqlite` interface, the schema version in `PRAGMA user_version`.

use anyhow::anyhow;
use spin_sdk::sqlite::{Connection, Value as SqliteValue};

use super::{first_words, Adapter, Row, Rows, Value};

pub struct Sqlite(Connection);

impl Sqlite {
    pub fn open(label: &str) -> anyhow::Result<Self> {
        // No `PRAGMA busy_timeout` here: Spin opens local databases with rusqlite, whose
        // connections already wait 5 s for a lock (this project's host waits too), and a libSQL
        // server refuses the PRAGMA. Sent anyway, it cost a statement per instance: SQLite
        // parses a PRAGMA anew on every run, and on libSQL every statement is a round trip.
        Connection::open(label)
            .map(Sqlite)
            .map_err(|e| anyhow!("opening database {label}: {e:?}"))
    }
}

impl Adapter for Sqlite {
    fn exec(&self, sql: &str, params: &[Value]) -> anyhow::Result<Rows> {
        let params: Vec<SqliteValue> = params.iter().map(param).collect();
        let result = self
            .0
            .execute(sql, &params)
            .map_err(|e| anyhow!("sqlite: {e:?} in {}", first_words(sql)))?;
        Ok(Rows {
            rows: result
                .rows
                .into_iter()
                .map(|row| Row {
                    values: row.values.into_iter().map(value).collect(),
                })
                .collect(),
        })
    }

    /// `BEGIN IMMEDIATE` takes the write lock at once, so writers queue instead of failing
    /// when they upgrade a read lock.
    fn begin(&self) -> anyhow::Result<()> {
        self.exec("BEGIN IMMEDIATE", &[]).map(drop)
    }

    /// A statement outside a transaction runs in its own, which takes the write lock before
    /// it writes and reads the database as it stands under that lock.
    fn statement_serializes(&self) -> bool {
        true
    }

    /// The schema version, on first sight of a new database also switching it to write-ahead
    /// logging, which lets readers proceed during writes. Only meaningful for a local file; a
    /// libSQL server refuses it, which is harmless.
    fn schema_version(&self) -> anyhow::Result<i64> {
        let version = self.locked_schema_version()?;
        if version == 0 {
            let _ = self.exec("PRAGMA journal_mode = WAL", &[]);
        }
        Ok(version)
    }

    /// The schema version, read again inside the migrating transaction.
    fn locked_schema_version(&self) -> anyhow::Result<i64> {
        let rows = self.exec("PRAGMA user_version", &[])?;
        Ok(rows.rows.first().map(|r| super::int(r, 0)).unwrap_or(0))
    }

    fn schema_version_in_transaction(&self) -> anyhow::Result<i64> {
        self.locked_schema_version()
    }

    fn set_schema_version(&self, version: i64) -> anyhow::Result<()> {
        self.exec(&format!("PRAGMA user_version = {version}"), &[])
            .map(drop)
    }
}

fn param(value: &Value) -> SqliteValue {
    match value {
        Value::Null => SqliteValue::Null,
        Value::Integer(n) => SqliteValue::Integer(*n),
        Value::Text(s) => SqliteValue::Text(s.clone()),
    }
}

/// The functions store integers and text only; anything else reads as NULL.
fn value(value: SqliteValue) -> Value {
    match value {
        SqliteValue::Integer(n) => Value::Integer(n),
        SqliteValue::Text(s) => Value::Text(s),
        _ => Value::Null,
    }
}
