//! One instance's connection to a database: a statement on it runs in place and waits its
//! turn for the write lock; the connection goes back to the idle ones when the instance drops it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use tokio::sync::Notify;

use super::pool::{Lease, Pool};
use super::settings::{is_busy, BUSY_TIMEOUT};
use super::OpenError;

/// How often a statement waiting for the lock tries again without being woken: another process
/// holding the file cannot wake it.
const LOCK_RECHECK: Duration = Duration::from_millis(5);

/// The statements of one database waiting for its write lock (see `execute`).
#[derive(Default)]
pub(super) struct LockWaits {
    /// Signalled when a connection of this host lets go of a lock.
    released: Notify,
    /// Taken by a waiting statement until it gets the lock: waiters take turns, first come
    /// first served.
    queue: Arc<tokio::sync::Mutex<()>>,
}

/// One instance's connection, shared with the statement running on it; back to the idle ones
/// when the instance drops it.
pub(super) struct DbConnection {
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
    /// `lease` as one instance's connection.
    pub(super) fn new(lease: Lease, idle: Arc<Pool>, waits: Arc<LockWaits>) -> Self {
        Self {
            changes_before: lease.connection.total_changes(),
            lease: Mutex::new(Some(lease)),
            idle,
            waits,
        }
    }

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
    pub(super) fn in_transaction(&self) -> bool {
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
    pub(super) fn changes(connection: &Connection, changes_before: u64) -> u64 {
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

/// Runs one statement and collects its rows, in place: most statements take microseconds, and
/// handing each one to a blocking thread cost more in thread switches than the statement itself.
///
/// When another connection holds the write lock (`SQLITE_BUSY`), the statement waits for it
/// here, asynchronously, until the busy timeout. Waiters take turns in the order they found the
/// lock taken, and the one whose turn it is tries again as soon as a connection of this host
/// lets go of the lock (every few milliseconds too, for other processes). SQLite's own busy
/// handler would sleep instead, 1, 2, 5, 10 ms and longer between attempts, in no order, and
/// those sleeps were the tail of write latency under load.
pub(super) async fn execute(
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

/// Runs `op`, which reads connection state and takes no lock, with the connection and its
/// total changes when this instance got it.
pub(super) fn with_connection<T>(
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

/// Version-independent SQL value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SqlValue {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

pub(super) struct Rows {
    pub(super) columns: Vec<String>,
    pub(super) rows: Vec<Vec<SqlValue>>,
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

pub(super) fn query(
    connection: &Connection,
    sql: &str,
    parameters: &[SqlValue],
) -> rusqlite::Result<Rows> {
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

#[cfg(test)]
mod tests {
    use spin_host_config::runtime_config::StoreLocation;

    use super::*;
    use crate::bindings::imports::spin::sqlite::sqlite::HostConnection;
    use crate::sqlite::tests::{borrow, default_database, memory_instance, open_default, run_all};
    use crate::sqlite::Databases;

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
}
