//! `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0` on rusqlite. Owns the
//! `[sqlite_database.<label>]` databases of the runtime config and the per-component grant check:
//! a label not granted is `access-denied`, an unknown one `no-such-database`. A guest may
//! `ATTACH` (or `VACUUM INTO`) another file only where the database sets
//! `allow_attach_file = true`, as in Spin (`sqlite_pool::refused`).
//!
//! Each `open` gets its own SQLite connection, so a `BEGIN` ... `COMMIT` spread over several
//! `execute` calls is one transaction, and instances running concurrently wait on each other
//! (WAL; a statement that finds the write lock taken waits for it) instead of failing. The
//! connection may be one an earlier instance used, made to look fresh (`sqlite_pool`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Result;
use indexmap::IndexMap;
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use spin_host_config::runtime_config::{SqliteDatabase, StoreLocation};
use tokio::sync::Notify;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::bindings::imports::fermyon::spin2_0_0::sqlite as v2;
use crate::bindings::imports::spin::sqlite::sqlite as v3;
use crate::sqlite_pool::{Lease, Pool};
use crate::state::InstanceState;

/// How long a statement waits for another connection's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a statement waiting for the lock tries again without being woken: another process
/// holding the file cannot wake it.
const LOCK_RECHECK: Duration = Duration::from_millis(5);

/// Every database the app can open: label -> where it lives.
pub struct Databases {
    databases: HashMap<String, Database>,
}

/// One label: where its connections go, the ones idle between instances, and its statements
/// waiting for the write lock.
struct Database {
    target: Target,
    idle: Arc<Pool>,
    waits: Arc<LockWaits>,
}

/// The statements of one database waiting for its write lock (see `execute`).
#[derive(Default)]
struct LockWaits {
    /// Signalled when a connection of this host lets go of a lock.
    released: Notify,
    /// Taken by a waiting statement until it gets the lock: waiters take turns, first come
    /// first served.
    queue: Arc<tokio::sync::Mutex<()>>,
}

/// Where connections of one label go. Both kinds keep an `_anchor` connection open for the
/// host's lifetime. For a file, that keeps the WAL in place: when the last connection to a WAL
/// database closes, SQLite checkpoints it and deletes the WAL file, and as every instance opens
/// and closes its own connection, each request would pay a checkpoint, several fsyncs and the
/// re-creation of the WAL. An in-memory database is a named shared-cache one that the anchor
/// keeps alive, so all connections (and instances) see the same data, as in Spin.
enum Target {
    File {
        path: PathBuf,
        _anchor: Mutex<Connection>,
    },
    Memory {
        uri: String,
        _anchor: Mutex<Connection>,
    },
}

impl Databases {
    /// The runtime config's `[sqlite_database.<label>]` databases (all `type = "spin"`; label
    /// checks against the manifest are `RuntimeConfig::check_manifest_labels`).
    pub fn new(configured: &IndexMap<String, SqliteDatabase>) -> Result<Self> {
        let mut databases = HashMap::new();
        for (index, (label, database)) in configured.iter().enumerate() {
            let target = match &database.location {
                StoreLocation::File(path) => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    // WAL is a property of the file: set it once, before any instance runs.
                    // Switching per connection races other connections and fails with
                    // "database is locked" without waiting for the busy timeout.
                    let anchor = Connection::open(path)?;
                    configure(&anchor)?;
                    enable_wal(&anchor)?;
                    // A connection counts as one that holds the WAL open only once it has
                    // read through it: read once, so the anchor keeps the WAL index mapped.
                    anchor.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
                    Target::File {
                        path: path.clone(),
                        _anchor: Mutex::new(anchor),
                    }
                }
                StoreLocation::InMemory => {
                    let uri = format!(
                        "file:shop-host-{}-{index}?mode=memory&cache=shared",
                        std::process::id()
                    );
                    let anchor = open_uri(&uri)?;
                    Target::Memory {
                        uri,
                        _anchor: Mutex::new(anchor),
                    }
                }
            };
            let database = Database {
                target,
                idle: Arc::new(Pool::new(database.allow_attach_file)),
                waits: Arc::default(),
            };
            databases.insert(label.clone(), database);
        }
        Ok(Self { databases })
    }
}

impl Database {
    /// A connection for an instance that must be done by `deadline`.
    fn connect(&self, deadline: Instant) -> rusqlite::Result<DbConnection> {
        let lease = self.idle.take(|| self.target.connect(), deadline)?;
        Ok(DbConnection {
            changes_before: lease.connection.total_changes(),
            lease: Mutex::new(Some(lease)),
            idle: self.idle.clone(),
            waits: self.waits.clone(),
        })
    }
}

impl Target {
    fn connect(&self) -> rusqlite::Result<Connection> {
        match self {
            Target::File { path, .. } => {
                let connection = Connection::open(path)?;
                configure(&connection)?;
                Ok(connection)
            }
            Target::Memory { uri, .. } => open_uri(uri),
        }
    }
}

fn open_uri(uri: &str) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(uri, flags)?;
    configure(&connection)?;
    Ok(connection)
}

/// Switches a database file to WAL. The switch needs the file to itself and does not wait on the
/// busy handler: while another connection or process (a second host sharing the state directory)
/// holds a lock it fails with `SQLITE_BUSY` or quietly keeps the old mode. Retry until the busy
/// timeout.
pub(crate) fn enable_wal(connection: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let result = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0));
        let switched = match result {
            Ok(mode) => mode.eq_ignore_ascii_case("wal"),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                false
            }
            Err(e) => return Err(e),
        };
        if switched {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("could not switch to WAL: the database stayed locked".into()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    relaxed_sync(connection)?;
    stable_plans(connection)?;
    connection.pragma_update(None, "foreign_keys", "ON")
}

/// The query planner's stability guarantee: a statement's plan no longer depends on the values
/// bound to it. Without it SQLite treats a bound `LIMIT ?` (and `LIKE ?`) as a constant of the
/// plan, so binding a new value expires the statement and the next step prepares it again:
/// every relay's `... LIMIT ?` was parsed anew on every run, a fifteenth of the host's CPU
/// under the saga, however long the connection kept it. The plan is the one a statement gets
/// when it is first prepared, before any value is bound; the results are the same.
fn stable_plans(connection: &Connection) -> rusqlite::Result<()> {
    connection.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// `synchronous = NORMAL`, SQLite's advice with WAL: a commit no longer waits for an fsync of
/// the WAL (those were an eighth of the host's CPU samples under load); the WAL is synced at
/// checkpoints. A killed host loses nothing that was committed (the writes are in the OS's
/// page cache); a power cut may lose the last commits before a checkpoint, never consistency.
pub(crate) fn relaxed_sync(connection: &Connection) -> rusqlite::Result<()> {
    connection.pragma_update(None, "synchronous", "NORMAL")
}

/// An opened connection (the guest's `connection` resource, both interface versions).
pub struct OpenDatabase(Arc<DbConnection>);

/// One instance's connection, shared with the statement running on it; back to the idle ones
/// when the instance drops it.
struct DbConnection {
    /// Always `Some` until dropped.
    lease: Mutex<Option<Lease>>,
    /// The connection's total changes when this instance got it (see `changes`).
    changes_before: u64,
    idle: Arc<Pool>,
    waits: Arc<LockWaits>,
}

/// What a connection held before a statement, to tell whether the statement let go of a lock.
struct Held {
    in_transaction: bool,
    total_changes: u64,
}

impl Held {
    fn of(connection: &Connection) -> Self {
        Self {
            in_transaction: !connection.is_autocommit(),
            total_changes: connection.total_changes(),
        }
    }

    /// A transaction ended, or a statement outside one wrote (and so took and released the
    /// write lock). A failed attempt to take the lock releases nothing: waking the other
    /// waiters for it would only make them all try again.
    fn released_by(&self, connection: &Connection) -> bool {
        connection.is_autocommit()
            && (self.in_transaction || connection.total_changes() != self.total_changes)
    }
}

impl DbConnection {
    /// One try at the statement, never waiting inside SQLite; wakes the waiting statements when
    /// this one let go of a lock.
    fn attempt(
        &self,
        statement: &str,
        parameters: &[SqlValue],
    ) -> Result<rusqlite::Result<Rows>, OpenError> {
        let lease = self
            .lease
            .lock()
            .map_err(|_| OpenError::Io("connection lock poisoned".into()))?;
        let connection = &lease
            .as_ref()
            .ok_or(OpenError::InvalidConnection)?
            .connection;
        // Never SQLite's busy handler, whatever `PRAGMA busy_timeout` the guest set: it would
        // sleep on this executor thread, which the lock holder may need to finish.
        connection
            .busy_timeout(Duration::ZERO)
            .map_err(|e| OpenError::Io(e.to_string()))?;
        let before = Held::of(connection);
        let result = query(connection, statement, parameters);
        if before.released_by(connection) {
            self.waits.released.notify_waiters();
        }
        Ok(result)
    }

    /// Whether the connection is inside a transaction. Only asked between statements, when no
    /// statement holds the connection; if one did, that counts as inside.
    fn in_transaction(&self) -> bool {
        match self.lease.try_lock() {
            Ok(lease) => lease
                .as_ref()
                .is_some_and(|lease| !lease.connection.is_autocommit()),
            Err(_) => true,
        }
    }

    /// `changes` as a fresh connection reports it: 0 until this instance's first change.
    /// `total_changes` grows with every row a statement of this connection changes, so when it
    /// has not moved, the last change SQLite remembers is an earlier instance's.
    fn changes(connection: &Connection, changes_before: u64) -> u64 {
        if connection.total_changes() == changes_before {
            0
        } else {
            connection.changes()
        }
    }
}

impl Drop for DbConnection {
    /// An instance that ends inside a transaction loses it, as closing the connection would;
    /// rolled back here so the waiting statements can be woken now.
    fn drop(&mut self) {
        if let Some(lease) = self.lease.get_mut().ok().and_then(Option::take) {
            lease.clear_deadline();
            if !lease.connection.is_autocommit() {
                let _ = lease.connection.execute_batch("ROLLBACK");
            }
            self.idle.give_back(lease);
        }
        self.waits.released.notify_waiters();
    }
}

/// Per-instance state: which labels this component may open and its open connections.
pub struct SqliteState {
    databases: Arc<Databases>,
    granted: Arc<HashSet<String>>,
    table: ResourceTable,
    /// The connections this instance opened, to tell whether it is inside a transaction.
    opened: Vec<Weak<DbConnection>>,
    /// The instance's deadline: a statement still running then is interrupted.
    deadline: Instant,
}

impl SqliteState {
    pub fn new(
        databases: Arc<Databases>,
        granted: Arc<HashSet<String>>,
        deadline: Instant,
    ) -> Self {
        Self {
            databases,
            granted,
            table: ResourceTable::new(),
            opened: Vec::new(),
            deadline,
        }
    }

    async fn open(&mut self, label: String) -> Result<Resource<OpenDatabase>, OpenError> {
        if !self.granted.contains(&label) {
            return Err(OpenError::AccessDenied);
        }
        let Some(database) = self.databases.databases.get(&label) else {
            return Err(OpenError::NoSuchDatabase);
        };
        // Opening takes no lock (the schema is read by the first statement): done in place.
        let connection = Arc::new(
            database
                .connect(self.deadline)
                .map_err(|e| OpenError::Io(e.to_string()))?,
        );
        self.opened.retain(|db| db.strong_count() > 0);
        self.opened.push(Arc::downgrade(&connection));
        self.table
            .push(OpenDatabase(connection))
            .map_err(|e| OpenError::Io(e.to_string()))
    }

    /// Whether a connection of this instance is inside a transaction, and so may hold a lock
    /// other instances wait for.
    pub fn in_transaction(&self) -> bool {
        self.opened
            .iter()
            .filter_map(Weak::upgrade)
            .any(|db| db.in_transaction())
    }

    fn connection(&self, handle: &Resource<OpenDatabase>) -> Option<Arc<DbConnection>> {
        self.table.get(handle).ok().map(|db| db.0.clone())
    }
}

/// Runs one statement and collects its rows, in place: most statements take microseconds, and
/// handing each one to a blocking thread cost more in thread switches than the statement itself.
///
/// When another connection holds the write lock (`SQLITE_BUSY`), the statement waits for it
/// here, asynchronously, until the busy timeout. Waiters take turns in the order they found the
/// lock taken, and the one whose turn it is tries again as soon as a connection of this host
/// lets go of the lock (every few milliseconds too, for other processes). SQLite's own busy
/// handler would sleep instead, 1, 2, 5, 10 ms and longer between attempts, in no order, and
/// those sleeps were the tail of write latency under load.
async fn execute(
    db: Option<Arc<DbConnection>>,
    statement: String,
    parameters: Vec<SqlValue>,
) -> Result<Rows, OpenError> {
    let db = db.ok_or(OpenError::InvalidConnection)?;
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut turn = None;
    loop {
        // Registered before trying, so a release between the attempt and the wait still wakes it.
        let released = db.waits.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        match db.attempt(&statement, &parameters)? {
            Err(e) if waits_for_lock(&e) && Instant::now() < deadline => {}
            done => return done.map_err(|e| OpenError::Io(e.to_string())),
        }
        if turn.is_none() {
            // Queued behind the statements that found the lock taken before this one; once at
            // the front, try again at once: the lock may have been let go meanwhile.
            if let Ok(guard) =
                tokio::time::timeout_at(deadline.into(), db.waits.queue.clone().lock_owned()).await
            {
                turn = Some(guard);
            }
            continue;
        }
        let wait = LOCK_RECHECK.min(deadline.saturating_duration_since(Instant::now()));
        let _ = tokio::time::timeout(wait, released).await;
    }
}

/// Whether `error` is another connection holding the lock, which waiting can cure. A stale WAL
/// snapshot (`SQLITE_BUSY_SNAPSHOT`: a read transaction that tries to write after another
/// connection committed) cannot: as with SQLite's busy handler, it fails at once.
fn waits_for_lock(error: &rusqlite::Error) -> bool {
    is_busy(error)
        && !matches!(error, rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_BUSY_SNAPSHOT)
}

/// Runs `op` with the busy timeout off, so a locked database fails at once instead of waiting.
pub(crate) fn without_waiting<T>(
    connection: &Connection,
    op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    connection.busy_timeout(Duration::ZERO)?;
    let result = op(connection);
    connection.busy_timeout(BUSY_TIMEOUT)?;
    result
}

/// Whether `error` means another connection holds the lock.
pub(crate) fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _)
        if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Runs `op`, which reads connection state and takes no lock, with the connection and its
/// total changes when this instance got it.
fn with_connection<T>(
    db: Option<Arc<DbConnection>>,
    op: impl FnOnce(&Connection, u64) -> T,
) -> wasmtime::Result<T> {
    let invalid = || wasmtime::format_err!("invalid sqlite connection handle");
    let db = db.ok_or_else(invalid)?;
    let lease = db
        .lease
        .lock()
        .map_err(|_| wasmtime::format_err!("connection lock poisoned"))?;
    let lease = lease.as_ref().ok_or_else(invalid)?;
    Ok(op(&lease.connection, db.changes_before))
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

/// Parameters are bound by reference, so a statement retried while it waits for the lock binds
/// the guest's values again without copying them.
impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match self {
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
            SqlValue::Null => ValueRef::Null,
        }))
    }
}

fn query(connection: &Connection, sql: &str, parameters: &[SqlValue]) -> rusqlite::Result<Rows> {
    let mut statement = connection.prepare_cached(sql)?;
    let columns: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(String::from)
        .collect();
    let mut result = statement.query(rusqlite::params_from_iter(parameters))?;
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
        with_connection(self.connection(&handle), |c, _| c.last_insert_rowid())
    }

    async fn changes(&mut self, handle: Resource<OpenDatabase>) -> wasmtime::Result<u64> {
        with_connection(self.connection(&handle), DbConnection::changes)
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

    /// The runtime config's databases: only `default`, at `location`.
    fn default_database(location: StoreLocation) -> IndexMap<String, SqliteDatabase> {
        IndexMap::from([(
            "default".to_string(),
            SqliteDatabase {
                location,
                allow_attach_file: false,
            },
        )])
    }

    fn borrow(handle: &Resource<OpenDatabase>) -> Resource<OpenDatabase> {
        Resource::new_borrow(handle.rep())
    }

    /// An instance's SQLite state over the in-memory `default` database of `databases` (new ones
    /// when `None`), granted `default` only.
    fn memory_instance(databases: Option<&Arc<Databases>>) -> (SqliteState, Arc<Databases>) {
        let databases = databases.cloned().unwrap_or_else(|| {
            let configured = default_database(StoreLocation::InMemory);
            Arc::new(Databases::new(&configured).unwrap())
        });
        let granted = Arc::new(HashSet::from(["default".to_string()]));
        let deadline = Instant::now() + Duration::from_secs(60);
        (
            SqliteState::new(databases.clone(), granted, deadline),
            databases,
        )
    }

    async fn open_default(state: &mut SqliteState) -> Resource<OpenDatabase> {
        HostConnection::open(state, "default".into())
            .await
            .unwrap()
            .unwrap()
    }

    async fn run_all(state: &mut SqliteState, db: &Resource<OpenDatabase>, statements: &[&str]) {
        for sql in statements {
            HostConnection::execute(state, borrow(db), sql.to_string(), vec![])
                .await
                .unwrap()
                .unwrap();
        }
    }

    #[tokio::test]
    async fn an_instance_is_in_a_transaction_from_begin_to_commit_or_close() {
        let (mut state, _) = memory_instance(None);
        assert!(!state.in_transaction());
        let db = open_default(&mut state).await;
        run_all(
            &mut state,
            &db,
            &["CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)"],
        )
        .await;
        assert!(!state.in_transaction());
        run_all(
            &mut state,
            &db,
            &["BEGIN IMMEDIATE", "INSERT INTO t DEFAULT VALUES"],
        )
        .await;
        assert!(state.in_transaction());
        run_all(&mut state, &db, &["COMMIT"]).await;
        assert!(!state.in_transaction());
        run_all(&mut state, &db, &["BEGIN"]).await;
        assert!(state.in_transaction());
        v3::HostConnection::drop(&mut state, db).await.unwrap();
        assert!(!state.in_transaction(), "a closed connection holds nothing");
    }

    #[tokio::test]
    async fn transactions_span_execute_calls_and_grants_are_enforced() {
        let (mut state, _) = memory_instance(None);
        let denied = HostConnection::open(&mut state, "other".into())
            .await
            .unwrap();
        assert!(matches!(denied, Err(v3::Error::AccessDenied)));
        let db = open_default(&mut state).await;
        run_all(
            &mut state,
            &db,
            &[
                "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT)",
                "DELETE FROM t",
                "BEGIN",
                "INSERT INTO t (name) VALUES ('a')",
                "ROLLBACK",
                "INSERT INTO t (name) VALUES ('b')",
            ],
        )
        .await;
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
        let other = HostConnection::open(&mut state, "default".into())
            .await
            .unwrap()
            .unwrap();
        let shared =
            HostConnection::execute(&mut state, borrow(&other), "SELECT * FROM t".into(), vec![])
                .await
                .unwrap()
                .unwrap();
        assert_eq!(
            shared.rows.len(),
            1,
            "a second connection sees the same in-memory database"
        );
    }

    #[tokio::test]
    async fn a_reused_connection_looks_fresh_to_the_next_instance() {
        let (mut first, databases) = memory_instance(None);
        let db = open_default(&mut first).await;
        let statements = [
            "CREATE TABLE t (x)",
            "INSERT INTO t VALUES (1), (2)",
            "BEGIN",
        ];
        run_all(&mut first, &db, &statements).await;
        assert_eq!(first.changes(borrow(&db)).await.unwrap(), 2);
        assert_eq!(first.last_insert_rowid(borrow(&db)).await.unwrap(), 2);
        drop(first);

        let (mut second, _) = memory_instance(Some(&databases));
        let db = open_default(&mut second).await;
        let reused = second.connection(&db).unwrap().changes_before;
        assert_eq!(reused, 2, "the first instance's connection, not a new one");
        assert_eq!(second.changes(borrow(&db)).await.unwrap(), 0);
        assert_eq!(second.last_insert_rowid(borrow(&db)).await.unwrap(), 0);
        // Not inside the first instance's transaction: BEGIN starts a new one.
        run_all(&mut second, &db, &["BEGIN", "SELECT * FROM t"]).await;
        assert_eq!(second.changes(borrow(&db)).await.unwrap(), 0);
    }

    #[test]
    fn start_up_waits_for_another_process_holding_the_file() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let file = dir.path().join("shared.db");
        let other = Connection::open(&file).unwrap();
        other
            .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
            .unwrap();
        let configured = default_database(StoreLocation::File(file.clone()));
        let databases = std::thread::scope(|scope| {
            let start = scope.spawn(|| Databases::new(&configured));
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
            start.join().unwrap()
        });
        databases.expect("start-up waits for the lock instead of failing");
        let mode: String = Connection::open(&file)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn hosts_opening_one_file_at_once_all_get_it_in_wal_mode() {
        let dir = testkit::tempfile::tempdir().unwrap();
        for round in 0..50 {
            let file = dir.path().join(format!("shared-{round}.db"));
            let configured = default_database(StoreLocation::File(file.clone()));
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|scope| {
                let starts: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            Databases::new(&configured).map(drop)
                        })
                    })
                    .collect();
                for start in starts {
                    start.join().unwrap().expect("start-up opens the database");
                }
            });
            let mode: String = Connection::open(&file)
                .unwrap()
                .query_row("PRAGMA journal_mode", [], |row| row.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
    }

    /// A database file with table `t (x)`, and its label's connections as an instance has them.
    fn file_database(dir: &std::path::Path) -> Databases {
        let configured = default_database(StoreLocation::File(dir.join("locked.db")));
        let databases = Databases::new(&configured).unwrap();
        databases.databases["default"]
            .target
            .connect()
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        databases
    }

    fn instance_connection(databases: &Databases) -> Arc<DbConnection> {
        let deadline = Instant::now() + Duration::from_secs(60);
        Arc::new(databases.databases["default"].connect(deadline).unwrap())
    }

    async fn run(db: &Arc<DbConnection>, sql: &str) -> Result<Rows, OpenError> {
        execute(Some(db.clone()), sql.into(), vec![]).await
    }

    async fn count(db: &Arc<DbConnection>) -> i64 {
        match run(db, "SELECT count(*) FROM t").await.unwrap().rows[0][0] {
            SqlValue::Integer(n) => n,
            ref other => panic!("count is {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_on_a_database_locked_by_another_process_waits_for_the_lock() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let databases = file_database(dir.path());
        let connection = instance_connection(&databases);
        let holder = databases.databases["default"].target.connect().unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            holder.execute_batch("COMMIT").unwrap();
        });
        let started = Instant::now();
        let inserted = run(&connection, "INSERT INTO t VALUES (1)").await;
        release.join().unwrap();
        assert!(inserted.is_ok(), "{:?}", inserted.err());
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "the insert cannot have run while the lock was held"
        );
    }

    /// A holder instance inside a write transaction (row 1 inserted), and another instance's
    /// `statement` already waiting for the lock.
    async fn waiting_behind_a_transaction(
        databases: &Databases,
        statement: &'static str,
    ) -> (
        Arc<DbConnection>,
        Arc<DbConnection>,
        tokio::task::JoinHandle<Result<Rows, OpenError>>,
    ) {
        let (holder, waiter) = (
            instance_connection(databases),
            instance_connection(databases),
        );
        run(&holder, "BEGIN IMMEDIATE").await.unwrap();
        run(&holder, "INSERT INTO t VALUES (1)").await.unwrap();
        let waiting = tokio::spawn({
            let waiter = waiter.clone();
            async move { run(&waiter, statement).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !waiting.is_finished(),
            "the statement ran while the lock was held"
        );
        (holder, waiter, waiting)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_statement_runs_once_the_holding_instance_commits() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let databases = file_database(dir.path());
        let (holder, waiter, waiting) =
            waiting_behind_a_transaction(&databases, "INSERT INTO t SELECT count(*) + 1 FROM t")
                .await;
        run(&holder, "COMMIT").await.unwrap();
        waiting
            .await
            .unwrap()
            .expect("the insert runs after the commit");
        let rows = run(&waiter, "SELECT x FROM t ORDER BY x")
            .await
            .unwrap()
            .rows;
        assert_eq!(
            rows,
            vec![vec![SqlValue::Integer(1)], vec![SqlValue::Integer(2)]],
            "the waiting insert saw the committed row"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_instance_ending_inside_a_transaction_lets_the_waiting_statements_in() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let databases = file_database(dir.path());
        let (holder, waiter, waiting) =
            waiting_behind_a_transaction(&databases, "INSERT INTO t VALUES (2)").await;
        drop(holder);
        waiting
            .await
            .unwrap()
            .expect("the insert runs once the holder is gone");
        assert_eq!(
            count(&waiter).await,
            1,
            "the unfinished transaction was rolled back"
        );
    }

    /// The guest may set its own `PRAGMA busy_timeout`; a statement that waits for the lock must
    /// still leave the executor thread to the others (here the only one).
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_for_the_lock_never_blocks_the_executor() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let databases = file_database(dir.path());
        let (holder, waiter) = (
            instance_connection(&databases),
            instance_connection(&databases),
        );
        run(&waiter, "PRAGMA busy_timeout = 5000").await.unwrap();
        run(&holder, "BEGIN IMMEDIATE").await.unwrap();
        let waiting = tokio::spawn({
            let waiter = waiter.clone();
            async move { run(&waiter, "INSERT INTO t VALUES (1)").await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished());
        run(&holder, "COMMIT")
            .await
            .expect("the holder got the thread back");
        waiting
            .await
            .unwrap()
            .expect("the waiting insert ran after the commit");
        assert_eq!(count(&waiter).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_from_a_stale_snapshot_fails_at_once() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let databases = file_database(dir.path());
        let (reader, writer) = (
            instance_connection(&databases),
            instance_connection(&databases),
        );
        run(&reader, "BEGIN").await.unwrap();
        assert_eq!(count(&reader).await, 0);
        run(&writer, "INSERT INTO t VALUES (1)").await.unwrap();
        let started = Instant::now();
        let stale = run(&reader, "INSERT INTO t VALUES (2)").await;
        assert!(
            stale.is_err(),
            "a write from an old snapshot cannot succeed"
        );
        assert!(
            started.elapsed() < BUSY_TIMEOUT,
            "waiting cannot help a stale snapshot; it must not wait for the busy timeout"
        );
    }

    /// A connection to `file` as the host opens one for an instance (the host's own, which
    /// keeps the WAL in place, is closed already).
    fn host_connection(file: std::path::PathBuf) -> Connection {
        let databases = Databases::new(&default_database(StoreLocation::File(file))).unwrap();
        databases.databases["default"].target.connect().unwrap()
    }

    #[test]
    fn an_instance_closing_its_connection_leaves_the_wal_in_place() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let file = dir.path().join("kept.db");
        let configured = default_database(StoreLocation::File(file.clone()));
        let databases = Databases::new(&configured).unwrap();
        let connection = databases.databases["default"].target.connect().unwrap();
        connection
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(connection);
        let wal = dir.path().join("kept.db-wal");
        assert!(
            wal.exists(),
            "the WAL was checkpointed and deleted when the instance closed its connection"
        );
    }

    #[test]
    fn file_connections_commit_without_waiting_for_fsync() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let connection = host_connection(dir.path().join("sync.db"));
        let synchronous: i64 = connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 1, "NORMAL");
    }

    #[test]
    fn a_kept_statement_is_not_prepared_again_for_new_values() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let connection = host_connection(dir.path().join("plans.db"));
        connection
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3);")
            .unwrap();
        let sql = "SELECT x FROM t ORDER BY x LIMIT ?";
        for limit in 1..=3 {
            let rows = query(&connection, sql, &[SqlValue::Integer(limit)]).unwrap();
            assert_eq!(rows.rows.len(), limit as usize);
        }
        let reprepared = connection
            .prepare_cached(sql)
            .unwrap()
            .get_status(rusqlite::StatementStatus::RePrepare);
        assert_eq!(
            reprepared, 0,
            "a new LIMIT value made SQLite prepare it again"
        );
    }
}
