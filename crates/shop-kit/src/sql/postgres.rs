//! The PostgreSQL adapter: Spin's `spin:postgres@4.0.0`. Statements arrive with SQLite's
//! placeholders and are renumbered; the schema version lives in table `schema_version`.

// The interface's error carries a whole database error record; it is matched on and turned into
// a message here, never passed on.
#![allow(clippy::result_large_err)]

use anyhow::anyhow;
use spin_sdk::pg4::{Connection, DbValue, ParameterValue, PgError as Error, QueryError};

use super::{first_words, placeholders, Adapter, Row, Rows, Value};

/// SQLSTATE `undefined_table`: what reading the version of a database never migrated gives.
const UNDEFINED_TABLE: &str = "42P01";

/// The key of the advisory lock that write transactions take: one lock per database, which
/// each function has to itself.
const WRITER_LOCK: i64 = 0x73686f70; // "shop"

pub struct Postgres(Connection);

impl Postgres {
    pub fn open(label: &str, url: &str) -> anyhow::Result<Self> {
        // The error names the label, never the connection string, which may hold a password.
        Connection::open(url)
            .map(Postgres)
            .map_err(|e| anyhow!("opening the postgres database of {label}: {}", message(&e)))
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        let params: Vec<ParameterValue> = params.iter().map(param).collect();
        let result = self.0.query(&placeholders::numbered(sql), &params)?;
        Ok(Rows {
            rows: result
                .rows
                .into_iter()
                .map(|row| Row {
                    values: row.into_iter().map(value).collect(),
                })
                .collect(),
        })
    }
}

impl Adapter for Postgres {
    fn exec(&self, sql: &str, params: &[Value]) -> anyhow::Result<Rows> {
        self.query(sql, params)
            .map_err(|e| anyhow!("postgres: {} in {}", message(&e), first_words(sql)))
    }

    /// `BEGIN`, then the database's writer lock, held until commit or rollback: writers
    /// serialize as SQLite's `BEGIN IMMEDIATE` makes them, so a transaction's reads (the
    /// stock left, the last position of a stream) still hold when it writes.
    fn begin(&self) -> anyhow::Result<()> {
        self.exec("BEGIN", &[])?;
        self.exec(
            "SELECT pg_advisory_xact_lock(?)",
            &[Value::Integer(WRITER_LOCK)],
        )
        .map(drop)
    }

    /// The schema version; 0 for a database never migrated (no `schema_version` table yet).
    fn schema_version(&self) -> anyhow::Result<i64> {
        match self.query("SELECT max(version) FROM schema_version", &[]) {
            Ok(rows) => Ok(rows.rows.first().map(|r| super::int(r, 0)).unwrap_or(0)),
            Err(Error::QueryFailed(QueryError::DbError(e))) if e.code == UNDEFINED_TABLE => Ok(0),
            Err(e) => Err(anyhow!(
                "postgres: {} reading the schema version",
                message(&e)
            )),
        }
    }

    /// The schema version, read again inside the migrating transaction (which holds the writer
    /// lock, so the first migrator creates the table and the others see it).
    fn locked_schema_version(&self) -> anyhow::Result<i64> {
        self.exec(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY)",
            &[],
        )?;
        self.schema_version()
    }

    /// A missing table (a new database) aborts the transaction, which is then rolled back.
    fn schema_version_in_transaction(&self) -> anyhow::Result<i64> {
        self.schema_version()
    }

    fn set_schema_version(&self, version: i64) -> anyhow::Result<()> {
        self.exec(
            "INSERT INTO schema_version (version) VALUES (?)",
            &[Value::Integer(version)],
        )
        .map(drop)
    }
}

fn param(value: &Value) -> ParameterValue {
    match value {
        Value::Null => ParameterValue::DbNull,
        Value::Integer(n) => ParameterValue::Int64(*n),
        Value::Text(s) => ParameterValue::Str(s.clone()),
    }
}

/// The functions store integers and text; PostgreSQL's smaller integers (a literal, a
/// `count`) and booleans (an `EXISTS`) read as integers, as SQLite gives them.
fn value(value: DbValue) -> Value {
    match value {
        DbValue::Int64(n) => Value::Integer(n),
        DbValue::Int32(n) => Value::Integer(n.into()),
        DbValue::Int16(n) => Value::Integer(n.into()),
        DbValue::Int8(n) => Value::Integer(n.into()),
        DbValue::Boolean(b) => Value::Integer(b.into()),
        DbValue::Str(s) => Value::Text(s),
        _ => Value::Null,
    }
}

/// A short account of a failure: a database error's code and message, not its whole record.
fn message(error: &Error) -> String {
    match error {
        Error::QueryFailed(QueryError::DbError(e)) => format!("{} {}", e.code, e.message),
        Error::QueryFailed(QueryError::Text(text))
        | Error::ConnectionFailed(text)
        | Error::BadParameter(text)
        | Error::ValueConversionFailed(text)
        | Error::Other(text) => text.clone(),
    }
}
