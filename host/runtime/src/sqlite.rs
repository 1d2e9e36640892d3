//! `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0` on rusqlite. Owns the
//! `[sqlite_database.<label>]` runtime-config section and the per-component grant check.
//!
//! Each `open` gets its own SQLite connection, so a `BEGIN` ... `COMMIT` spread over several
//! `execute` calls is one transaction, and instances running concurrently wait on each other
//! (busy timeout, WAL) instead of failing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::bindings::imports::fermyon::spin2_0_0::sqlite as v2;
use crate::bindings::imports::spin::sqlite::sqlite as v3;
use crate::state::InstanceState;

/// Spin's default database: label `default` in `<state dir>/sqlite_db.db`.
pub const DEFAULT_LABEL: &str = "default";
const DEFAULT_FILE: &str = "sqlite_db.db";
/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every database the app can open: label -> file.
pub struct Databases {
    files: HashMap<String, PathBuf>,
}

impl Databases {
    /// The `default` database plus every `[sqlite_database.<label>]` of the runtime config
    /// (label -> file; only `type = "spin"` is supported by this host).
    pub fn new(state_dir: &Path, configured: &[(String, PathBuf)]) -> Result<Self> {
        let mut files = HashMap::new();
        files.insert(DEFAULT_LABEL.to_string(), state_dir.join(DEFAULT_FILE));
        for (label, path) in configured {
            files.insert(label.clone(), path.clone());
        }
        for path in files.values() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
        }
        Ok(Self { files })
    }

    /// Refuses a component granted a label that is not configured, as Spin does at start-up.
    pub fn check_grants(&self, component: &str, labels: &[String]) -> Result<()> {
        for label in labels {
            if !self.files.contains_key(label) {
                bail!("component `{component}`: unknown sqlite_databases label `{label}` (define it in the runtime config as [sqlite_database.{label}])");
            }
        }
        Ok(())
    }

    /// Runs SQL statements (`spin up --sqlite` style) against a database before start.
    pub fn run_statements(&self, label: &str, sql: &str) -> Result<()> {
        let Some(path) = self.files.get(label) else {
            bail!("unknown sqlite database `{label}`");
        };
        connect(path)?.execute_batch(sql)?;
        Ok(())
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(connection)
}

/// An opened connection (the guest's `connection` resource, both interface versions).
pub struct OpenDatabase {
    connection: Arc<Mutex<Connection>>,
}

/// Per-instance state: which labels this component may open and its open connections.
pub struct SqliteState {
    databases: Arc<Databases>,
    granted: Arc<HashSet<String>>,
    table: ResourceTable,
}

impl SqliteState {
    pub fn new(databases: Arc<Databases>, granted: Arc<HashSet<String>>) -> Self {
        Self {
            databases,
            granted,
            table: ResourceTable::new(),
        }
    }

    async fn open(&mut self, label: String) -> Result<Resource<OpenDatabase>, OpenError> {
        if !self.granted.contains(&label) {
            return Err(OpenError::AccessDenied);
        }
        let path = self
            .databases
            .files
            .get(&label)
            .cloned()
            .ok_or(OpenError::NoSuchDatabase)?;
        let connection = tokio::task::spawn_blocking(move || connect(&path))
            .await
            .map_err(|e| OpenError::Io(e.to_string()))?
            .map_err(|e| OpenError::Io(e.to_string()))?;
        self.table
            .push(OpenDatabase {
                connection: Arc::new(Mutex::new(connection)),
            })
            .map_err(|e| OpenError::Io(e.to_string()))
    }

    fn connection(&self, handle: &Resource<OpenDatabase>) -> Option<Arc<Mutex<Connection>>> {
        self.table.get(handle).ok().map(|db| db.connection.clone())
    }
}

/// Runs one statement on a blocking thread and collects its rows.
async fn execute(
    connection: Option<Arc<Mutex<Connection>>>,
    statement: String,
    parameters: Vec<SqlValue>,
) -> Result<Rows, OpenError> {
    let connection = connection.ok_or(OpenError::InvalidConnection)?;
    tokio::task::spawn_blocking(move || {
        let connection = connection
            .lock()
            .map_err(|_| OpenError::Io("connection lock poisoned".into()))?;
        query(&connection, &statement, parameters).map_err(|e| OpenError::Io(e.to_string()))
    })
    .await
    .map_err(|e| OpenError::Io(e.to_string()))?
}

/// Runs `op` with the connection on a blocking thread.
async fn with_connection<T: Send + 'static>(
    connection: Option<Arc<Mutex<Connection>>>,
    op: impl FnOnce(&Connection) -> T + Send + 'static,
) -> wasmtime::Result<T> {
    let connection =
        connection.ok_or_else(|| wasmtime::format_err!("invalid sqlite connection handle"))?;
    let result = tokio::task::spawn_blocking(move || {
        let connection = connection.lock().map_err(|_| "connection lock poisoned")?;
        Ok::<_, &str>(op(&connection))
    })
    .await?;
    result.map_err(|e| wasmtime::format_err!("{e}"))
}

/// Errors common to both interface versions.
#[derive(Debug)]
enum OpenError {
    NoSuchDatabase,
    AccessDenied,
    InvalidConnection,
    Io(String),
}

/// Version-independent SQL value.
#[derive(Debug, Clone, PartialEq)]
enum SqlValue {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<SqlValue>>,
}

fn query(connection: &Connection, sql: &str, parameters: Vec<SqlValue>) -> rusqlite::Result<Rows> {
    let mut statement = connection.prepare_cached(sql)?;
    let columns: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(String::from)
        .collect();
    let params = parameters.into_iter().map(|value| match value {
        SqlValue::Integer(i) => rusqlite::types::Value::Integer(i),
        SqlValue::Real(f) => rusqlite::types::Value::Real(f),
        SqlValue::Text(s) => rusqlite::types::Value::Text(s),
        SqlValue::Blob(b) => rusqlite::types::Value::Blob(b),
        SqlValue::Null => rusqlite::types::Value::Null,
    });
    let mut result = statement.query(rusqlite::params_from_iter(params))?;
    let mut rows = Vec::new();
    while let Some(row) = result.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for index in 0..columns.len() {
            values.push(match row.get_ref(index)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(i) => SqlValue::Integer(i),
                ValueRef::Real(f) => SqlValue::Real(f),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            });
        }
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    v2::add_to_linker::<_, HasSelf<SqliteState>>(linker, |state| &mut state.sqlite)?;
    v3::add_to_linker::<_, HasSelf<SqliteState>>(linker, |state| &mut state.sqlite)?;
    Ok(())
}

/// Generates the conversions between one interface version's types and the shared ones.
macro_rules! version_conversions {
    ($v:ident, $to_error:ident, $from_value:ident, $to_result:ident) => {
        fn $to_error(error: OpenError) -> $v::Error {
            match error {
                OpenError::NoSuchDatabase => $v::Error::NoSuchDatabase,
                OpenError::AccessDenied => $v::Error::AccessDenied,
                OpenError::InvalidConnection => $v::Error::InvalidConnection,
                OpenError::Io(message) => $v::Error::Io(message),
            }
        }

        fn $from_value(value: $v::Value) -> SqlValue {
            match value {
                $v::Value::Integer(i) => SqlValue::Integer(i),
                $v::Value::Real(f) => SqlValue::Real(f),
                $v::Value::Text(s) => SqlValue::Text(s),
                $v::Value::Blob(b) => SqlValue::Blob(b),
                $v::Value::Null => SqlValue::Null,
            }
        }

        fn $to_result(rows: Rows) -> $v::QueryResult {
            let to_value = |value: SqlValue| match value {
                SqlValue::Integer(i) => $v::Value::Integer(i),
                SqlValue::Real(f) => $v::Value::Real(f),
                SqlValue::Text(s) => $v::Value::Text(s),
                SqlValue::Blob(b) => $v::Value::Blob(b),
                SqlValue::Null => $v::Value::Null,
            };
            $v::QueryResult {
                columns: rows.columns,
                rows: rows
                    .rows
                    .into_iter()
                    .map(|values| $v::RowResult {
                        values: values.into_iter().map(to_value).collect(),
                    })
                    .collect(),
            }
        }
    };
}

version_conversions!(v2, v2_error, v2_value, v2_result);
version_conversions!(v3, v3_error, v3_value, v3_result);

impl v2::Host for SqliteState {}

impl v2::HostConnection for SqliteState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenDatabase>, v2::Error>> {
        Ok(SqliteState::open(self, database).await.map_err(v2_error))
    }

    async fn execute(
        &mut self,
        handle: Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let parameters = parameters.into_iter().map(v2_value).collect();
        Ok(execute(self.connection(&handle), statement, parameters)
            .await
            .map(v2_result)
            .map_err(v2_error))
    }

    async fn drop(&mut self, handle: Resource<OpenDatabase>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl v3::Host for SqliteState {}

impl v3::HostConnection for SqliteState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenDatabase>, v3::Error>> {
        Ok(SqliteState::open(self, database).await.map_err(v3_error))
    }

    async fn execute(
        &mut self,
        handle: Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<Result<v3::QueryResult, v3::Error>> {
        let parameters = parameters.into_iter().map(v3_value).collect();
        Ok(execute(self.connection(&handle), statement, parameters)
            .await
            .map(v3_result)
            .map_err(v3_error))
    }

    async fn last_insert_rowid(&mut self, handle: Resource<OpenDatabase>) -> wasmtime::Result<i64> {
        with_connection(self.connection(&handle), |c| c.last_insert_rowid()).await
    }

    async fn changes(&mut self, handle: Resource<OpenDatabase>) -> wasmtime::Result<u64> {
        with_connection(self.connection(&handle), |c| c.changes()).await
    }

    async fn drop(&mut self, handle: Resource<OpenDatabase>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v3::HostConnection;

    fn borrow(handle: &Resource<OpenDatabase>) -> Resource<OpenDatabase> {
        Resource::new_borrow(handle.rep())
    }

    #[tokio::test]
    async fn transactions_span_execute_calls_and_grants_are_enforced() {
        let dir = std::env::temp_dir().join(format!("sqlite-test-{}", std::process::id()));
        let databases = Arc::new(Databases::new(&dir, &[]).unwrap());
        assert!(databases.check_grants("c", &["nope".into()]).is_err());
        let granted = Arc::new(HashSet::from([DEFAULT_LABEL.to_string()]));
        let mut state = SqliteState::new(databases, granted);

        let denied = HostConnection::open(&mut state, "other".into())
            .await
            .unwrap();
        assert!(matches!(denied, Err(v3::Error::AccessDenied)));
        let db = HostConnection::open(&mut state, DEFAULT_LABEL.into())
            .await
            .unwrap()
            .unwrap();
        for sql in [
            "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT)",
            "DELETE FROM t",
            "BEGIN",
            "INSERT INTO t (name) VALUES ('a')",
            "ROLLBACK",
            "INSERT INTO t (name) VALUES ('b')",
        ] {
            HostConnection::execute(&mut state, borrow(&db), sql.into(), vec![])
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(state.changes(borrow(&db)).await.unwrap(), 1);
        let rows = HostConnection::execute(
            &mut state,
            borrow(&db),
            "SELECT name FROM t WHERE name = ?".into(),
            vec![v3::Value::Text("b".into())],
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(rows.columns, vec!["name".to_string()]);
        assert_eq!(rows.rows.len(), 1);
        let all =
            HostConnection::execute(&mut state, borrow(&db), "SELECT * FROM t".into(), vec![])
                .await
                .unwrap()
                .unwrap();
        assert_eq!(all.rows.len(), 1, "the rolled back row is gone");
        std::fs::remove_dir_all(&dir).ok();
    }
}
