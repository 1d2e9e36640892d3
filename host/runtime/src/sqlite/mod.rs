//! `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0` on rusqlite (`interface`). This
//! module owns the `[sqlite_database.<label>]` databases of the runtime config and the
//! per-component grant check: a label not granted is `access-denied`, an unknown one
//! `no-such-database`. A guest may `ATTACH` (or `VACUUM INTO`) another file only where the
//! database sets `allow_attach_file = true`, as in Spin (`pool::refused`).
//!
//! Each `open` gets its own SQLite connection (`connection`), so a `BEGIN` ... `COMMIT` spread
//! over several `execute` calls is one transaction, and instances running concurrently wait on
//! each other (WAL; a statement that finds the write lock taken waits for it) instead of
//! failing. The connection may be one an earlier instance used, made to look fresh (`pool`).
//! Every connection gets the same settings (`settings`), and a thread of the host checkpoints
//! the files (`checkpoint`).

pub(crate) mod checkpoint;
mod connection;
mod interface;
mod pool;
pub(crate) mod settings;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use anyhow::Result;
use indexmap::IndexMap;
use rusqlite::Connection;
use spin_host_config::runtime_config::{SqliteDatabase, StoreLocation};
use wasmtime::component::{Resource, ResourceTable};

use connection::{DbConnection, LockWaits};
use pool::Pool;
use settings::{configure, enable_wal};

pub use interface::add_to_linker;

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
        Ok(DbConnection::new(
            lease,
            self.idle.clone(),
            self.waits.clone(),
        ))
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

/// An opened connection (the guest's `connection` resource, both interface versions).
pub struct OpenDatabase(Arc<DbConnection>);

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

/// Errors common to both interface versions.
#[derive(Debug)]
enum OpenError {
    NoSuchDatabase,
    AccessDenied,
    InvalidConnection,
    Io(String),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bindings::imports::spin::sqlite::sqlite as v3;
    use v3::HostConnection;

    /// The runtime config's databases: only `default`, at `location`.
    pub(super) fn default_database(location: StoreLocation) -> IndexMap<String, SqliteDatabase> {
        IndexMap::from([(
            "default".to_string(),
            SqliteDatabase {
                location,
                allow_attach_file: false,
            },
        )])
    }

    pub(super) fn borrow(handle: &Resource<OpenDatabase>) -> Resource<OpenDatabase> {
        Resource::new_borrow(handle.rep())
    }

    /// An instance's SQLite state over the in-memory `default` database of `databases` (new ones
    /// when `None`), granted `default` only.
    pub(super) fn memory_instance(
        databases: Option<&Arc<Databases>>,
    ) -> (SqliteState, Arc<Databases>) {
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

    pub(super) async fn open_default(state: &mut SqliteState) -> Resource<OpenDatabase> {
        HostConnection::open(state, "default".into())
            .await
            .unwrap()
            .unwrap()
    }

    pub(super) async fn run_all(
        state: &mut SqliteState,
        db: &Resource<OpenDatabase>,
        statements: &[&str],
    ) {
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
}
