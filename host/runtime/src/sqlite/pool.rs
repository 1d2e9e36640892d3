//! SQLite connections reused across instances. Spin opens a connection for every `open`, and so
//! did this host; opening one, reading its schema and parsing every statement again took a
//! quarter of the host's CPU time under the saga. A connection an instance is done with now
//! goes back to its database's idle list and serves a later `open`, with its schema and
//! prepared statements still in place.
//!
//! To the guest it is indistinguishable from a fresh connection: it comes back outside any
//! transaction (the instance's transaction is rolled back first), `last-insert-rowid` and
//! `changes` start from zero again, and a connection on which a statement changed state that
//! belongs to the connection (a connection PRAGMA, a TEMP object, ATTACH) is closed instead of
//! kept. SQLite's authorizer reports those statements as they are prepared. This is written by
//! hand: connection pools such as r2d2 hand a connection back as it is, and cannot tell such a
//! statement from any other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{ffi, Connection};

/// Idle connections kept per database; enough for the instances that run at once on a few
/// cores, few enough that their page caches stay small.
const MAX_IDLE: usize = 8;

/// Distinct statements each connection keeps prepared: every statement of a component's code.
const STATEMENT_CACHE: usize = 128;

/// SQLite virtual-machine steps between two looks at the clock by a running statement: a
/// fraction of a millisecond, for a clock read that costs tens of nanoseconds.
const PROGRESS_STEPS: std::ffi::c_int = 10_000;

/// The idle connections of one database, and what statements on its connections may reach
/// beyond its own file.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Lease>>,
    /// `allow_attach_file = true` in the database's `[sqlite_database.<label>]` (see
    /// [`refused`]).
    allow_attach_file: bool,
}

/// A connection, and the flag its authorizer raises when a statement changes state that would
/// outlive the instance using it.
pub(crate) struct Lease {
    pub(crate) connection: Connection,
    tainted: Arc<AtomicBool>,
    /// The deadline of the instance holding the connection, which its progress handler checks.
    deadline: Arc<StatementDeadline>,
}

/// When statements on a connection must stop: the holding instance's deadline, in nanoseconds
/// after a fixed instant of this process (`u64::MAX`: never), so the progress handler reads it
/// without a lock.
struct StatementDeadline(AtomicU64);

impl StatementDeadline {
    const NEVER: u64 = u64::MAX;

    fn origin() -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now)
    }

    fn set(&self, deadline: Option<Instant>) {
        let nanos = deadline.map_or(Self::NEVER, |deadline| {
            let after = deadline
                .saturating_duration_since(Self::origin())
                .as_nanos();
            u64::try_from(after).unwrap_or(Self::NEVER)
        });
        self.0.store(nanos, Ordering::Relaxed);
    }

    fn passed(&self) -> bool {
        let nanos = self.0.load(Ordering::Relaxed);
        nanos != Self::NEVER && Self::origin().elapsed().as_nanos() >= u128::from(nanos)
    }
}

impl Pool {
    /// The idle connections of a database whose runtime config sets `allow_attach_file` so.
    pub(crate) fn new(allow_attach_file: bool) -> Self {
        Self {
            idle: Mutex::default(),
            allow_attach_file,
        }
    }

    /// An idle connection made to look fresh, or a new one from `open`, for an instance that
    /// must be done by `deadline`: a statement still running then is interrupted.
    pub(crate) fn take(
        &self,
        open: impl FnOnce() -> rusqlite::Result<Connection>,
        deadline: Instant,
    ) -> rusqlite::Result<Lease> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let lease = match idle {
            Some(lease) => {
                lease.forget_last_insert();
                lease
            }
            None => Lease::new(open()?, self.allow_attach_file),
        };
        lease.deadline.set(Some(deadline));
        Ok(lease)
    }

    /// Keeps `lease` for a later instance if nothing of this one's can leak through it.
    pub(crate) fn give_back(&self, lease: Lease) {
        lease.clear_deadline();
        if !lease.reusable() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(lease);
            }
        }
    }
}

impl Lease {
    fn new(connection: Connection, allow_attach_file: bool) -> Self {
        let tainted = Arc::new(AtomicBool::new(false));
        let flag = tainted.clone();
        connection.authorizer(Some(move |context: AuthContext<'_>| {
            if refused(&context.action, allow_attach_file) {
                return Authorization::Deny;
            }
            if changes_connection_state(&context) {
                flag.store(true, Ordering::Relaxed);
            }
            Authorization::Allow
        }));
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // A statement still running at its instance's deadline (a runaway query, a huge
        // `VACUUM`) holds its thread, where neither the epoch deadline nor the trigger's timer
        // can reach it: SQLite stops it, and the guest gets `io("interrupted")`.
        let deadline = Arc::new(StatementDeadline(AtomicU64::new(StatementDeadline::NEVER)));
        let passed = deadline.clone();
        connection.progress_handler(PROGRESS_STEPS, Some(move || passed.passed()));
        Self {
            connection,
            tainted,
            deadline,
        }
    }

    /// Lets statements run however long they take: the host's own, such as the rollback of an
    /// instance that ended (past its deadline, maybe) inside a transaction.
    pub(crate) fn clear_deadline(&self) {
        self.deadline.set(None);
    }

    fn reusable(&self) -> bool {
        !self.tainted.load(Ordering::Relaxed) && self.connection.is_autocommit()
    }

    /// A fresh connection's `last-insert-rowid` is 0.
    fn forget_last_insert(&self) {
        // SAFETY: the handle belongs to this live connection, which nothing else uses meanwhile
        // (the lease is owned here), and the call only sets an integer on it.
        unsafe { rusqlite::ffi::sqlite3_set_last_insert_rowid(self.connection.handle(), 0) };
    }
}

/// Whether the guest may not run a statement that does `action`, as Spin's in-process SQLite
/// (`crates/sqlite-inproc/src/lib.rs`) decides with its authorizer: unless the database's
/// runtime config sets `allow_attach_file = true`, `ATTACH` of anything but a new temporary
/// database (`''`) or `':memory:'` is denied, and SQLite fails the statement as it prepares it
/// with "not authorized" (`SQLITE_AUTH`), which the guest gets as `io("not authorized")`.
/// `VACUUM INTO 'file'` is refused by the same rule, in Spin too: SQLite runs it as an `ATTACH`
/// of the file when the statement steps, and the guest gets `io("authorization denied")`
/// (a plain `VACUUM` attaches `''` and runs).
///
/// One refusal goes beyond Spin, closing a way around its rule rather than changing what it
/// allows: an `ATTACH` whose file name is not a literal (`ATTACH ? AS db`), which SQLite hands
/// the authorizer without a file name and Spin lets through unchecked.
///
/// Loading an extension needs no rule here: SQLite's `load_extension()` SQL function is off
/// unless the host turns it on (rusqlite's `load_extension` feature, which this host does not
/// use), and fails with "not authorized" as in Spin.
fn refused(action: &AuthAction<'_>, allow_attach_file: bool) -> bool {
    match action {
        AuthAction::Attach { filename } => {
            !allow_attach_file && !matches!(*filename, "" | ":memory:")
        }
        AuthAction::Unknown { code, .. } => !allow_attach_file && *code == ffi::SQLITE_ATTACH,
        _ => false,
    }
}

/// Whether a statement changes what belongs to its connection rather than to the database file:
/// settings, TEMP objects, attached databases. Reads of a PRAGMA, and the PRAGMAs that act on
/// the file or only report, change nothing of the kind. `busy_timeout` is harmless too: this
/// host never lets SQLite's busy handler wait (see `connection::DbConnection::attempt`).
fn changes_connection_state(context: &AuthContext<'_>) -> bool {
    let in_temp = context
        .database_name
        .is_some_and(|name| name.eq_ignore_ascii_case("temp"));
    match context.action {
        AuthAction::Pragma {
            pragma_name,
            pragma_value: Some(value),
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let harmless = matches!(
                name.as_str(),
                "busy_timeout"
                    | "user_version"
                    | "application_id"
                    | "table_info"
                    | "table_xinfo"
                    | "table_list"
                    | "index_info"
                    | "index_xinfo"
                    | "index_list"
                    | "foreign_key_list"
                    | "foreign_key_check"
                    | "integrity_check"
                    | "quick_check"
                    | "wal_checkpoint"
                    | "optimize"
            ) || (name == "journal_mode" && value.eq_ignore_ascii_case("wal"));
            !harmless
        }
        AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => true,
        // An action rusqlite cannot name, such as an `ATTACH` or `DETACH` of a name that is not
        // a literal: assume the worst.
        AuthAction::Unknown { .. } => true,
        // `CREATE TABLE temp.t` and the like: a TEMP object by its schema's name.
        AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateVtable { .. } => in_temp,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> rusqlite::Result<Connection> {
        Connection::open_in_memory()
    }

    /// A connection for an instance with a minute to go.
    fn taken(pool: &Pool) -> Lease {
        pool.take(memory, Instant::now() + std::time::Duration::from_secs(60))
            .unwrap()
    }

    /// Runs `sql` on a connection of `pool` and gives it back; whether the same connection
    /// serves the next `take` (told by a marker table it holds).
    fn kept_after(sql: &str) -> bool {
        let pool = Pool::default();
        let lease = taken(&pool);
        lease
            .connection
            .execute_batch("CREATE TABLE marker (x)")
            .unwrap();
        lease.connection.execute_batch(sql).unwrap();
        pool.give_back(lease);
        let next = taken(&pool);
        next.connection
            .prepare("SELECT x FROM marker")
            .map(drop)
            .is_ok()
    }

    #[test]
    fn a_connection_used_for_plain_statements_serves_the_next_open() {
        assert!(kept_after(
            "INSERT INTO marker VALUES (1); SELECT * FROM marker; UPDATE marker SET x = 2"
        ));
        assert!(kept_after("PRAGMA busy_timeout = 5000"));
        assert!(kept_after("PRAGMA foreign_keys"), "a PRAGMA read");
        assert!(
            kept_after("PRAGMA user_version = 3"),
            "a PRAGMA of the file"
        );
        assert!(kept_after("PRAGMA table_info(marker)"));
        // The kinds of statement the app's components run: none is an action the authorizer
        // cannot name (which would close the connection).
        assert!(kept_after(
            "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT UNIQUE);
             CREATE INDEX IF NOT EXISTS t_v ON t (v);
             INSERT INTO t (v) VALUES ('a') ON CONFLICT (v) DO UPDATE SET v = excluded.v
                 RETURNING id;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3)
                 SELECT count(*), max(i) FROM n;
             SELECT t.id, m.x FROM t JOIN marker m ON m.x = t.id WHERE t.v IN (SELECT v FROM t);
             BEGIN IMMEDIATE; SAVEPOINT s; DELETE FROM t; RELEASE s; COMMIT;
             ANALYZE; SELECT rowid FROM marker"
        ));
    }

    #[test]
    fn a_connection_whose_own_state_changed_is_closed_instead() {
        for sql in [
            "PRAGMA foreign_keys = OFF",
            "PRAGMA main.cache_size = 10",
            "PRAGMA query_only = 1",
            "PRAGMA journal_mode = MEMORY",
            "CREATE TEMP TABLE scratch (x)",
            "CREATE TABLE temp.scratch (x)",
            "CREATE TEMP VIEW v AS SELECT 1",
            "ATTACH ':memory:' AS other",
        ] {
            assert!(!kept_after(sql), "{sql} must not reach another instance");
        }
    }

    /// What each statement of `sql` gives on a fresh connection of a database whose runtime
    /// config sets `allow_attach_file` so: `Ok` or SQLite's message.
    fn outcomes(allow_attach_file: bool, sql: &[&str]) -> Vec<Result<(), String>> {
        let pool = Pool::new(allow_attach_file);
        let lease = taken(&pool);
        sql.iter()
            .map(|sql| {
                let mut statement = lease.connection.prepare(sql).map_err(|e| e.to_string())?;
                let mut rows = statement.query([]).map_err(|e| e.to_string())?;
                while rows.next().map_err(|e| e.to_string())?.is_some() {}
                Ok(())
            })
            .collect()
    }

    fn quoted(path: &std::path::Path) -> String {
        format!("'{}'", path.display())
    }

    /// Spin (`crates/sqlite-inproc`): without `allow_attach_file`, `ATTACH` of a file fails with
    /// SQLite's "not authorized"; a new temporary database or `:memory:` may be attached.
    #[test]
    fn attaching_a_file_is_not_authorized_unless_the_database_allows_it() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let file = dir.path().join("other.db");
        let attach_file = format!("ATTACH {} AS other", quoted(&file));
        let denied = Err("not authorized".to_string());
        assert_eq!(
            outcomes(
                false,
                &[&attach_file, "ATTACH ':memory:' AS m", "ATTACH '' AS t"]
            ),
            vec![denied.clone(), Ok(()), Ok(())]
        );
        assert!(!file.exists(), "a refused ATTACH must not create the file");
        let bound = Pool::default();
        let lease = taken(&bound);
        let by_parameter = lease
            .connection
            .execute("ATTACH ? AS other", [file.display().to_string()])
            .map_err(|e| e.to_string());
        assert_eq!(
            by_parameter.map(drop),
            denied,
            "a file name bound as a parameter is not checked, so it is refused"
        );
        assert!(!file.exists());

        assert_eq!(
            outcomes(true, &[&attach_file, "CREATE TABLE other.t (x)"]),
            vec![Ok(()), Ok(())]
        );
        assert!(file.exists(), "allow_attach_file = true attaches the file");
    }

    /// `VACUUM INTO` writes a copy of the database to any file: refused as SQLite runs it, as an
    /// `ATTACH` of that file when the statement steps (so in Spin too, with the same message,
    /// SQLite's text for `SQLITE_AUTH`). A plain `VACUUM` attaches `''` and runs.
    #[test]
    fn vacuum_into_a_file_is_not_authorized_unless_the_database_allows_it() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy.db");
        let vacuum_into = format!("VACUUM INTO {}", quoted(&copy));
        assert_eq!(
            outcomes(false, &["CREATE TABLE t (x)", "VACUUM", &vacuum_into]),
            vec![Ok(()), Ok(()), Err("authorization denied".to_string())]
        );
        assert!(
            !copy.exists(),
            "a refused VACUUM INTO must not write the copy"
        );
        assert_eq!(
            outcomes(true, &["CREATE TABLE t (x)", &vacuum_into]),
            vec![Ok(()), Ok(())]
        );
        assert!(copy.exists());
    }

    /// SQLite's own refusal, the same in Spin.
    #[test]
    fn loading_an_extension_is_not_authorized() {
        for allow_attach_file in [false, true] {
            assert_eq!(
                outcomes(allow_attach_file, &["SELECT load_extension('libm.so')"]),
                vec![Err("not authorized".to_string())]
            );
        }
    }

    /// A statement that counts to ten billion, minutes of work.
    const RUNAWAY: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
         WHERE i < 10000000000) SELECT count(*) FROM n";

    #[test]
    fn a_statement_running_past_the_instance_deadline_is_interrupted() {
        let pool = Pool::default();
        let started = Instant::now();
        let lease = pool
            .take(memory, started + std::time::Duration::from_millis(300))
            .unwrap();
        let result = lease
            .connection
            .query_row(RUNAWAY, [], |row| row.get::<_, i64>(0));
        let took = started.elapsed();
        assert_eq!(
            result.map_err(|e| e.to_string()),
            Err("interrupted".to_string())
        );
        assert!(
            took >= std::time::Duration::from_millis(300)
                && took < std::time::Duration::from_secs(5),
            "interrupted after {took:?}, not at the 300 ms deadline"
        );
        // The host's own statements after the deadline run: the rollback of an instance that
        // ended there, and the next instance's on the same connection, with its own deadline.
        lease.clear_deadline();
        lease.connection.execute_batch("BEGIN; ROLLBACK").unwrap();
        pool.give_back(lease);
        let next = pool
            .take(
                memory,
                Instant::now() + std::time::Duration::from_millis(200),
            )
            .unwrap();
        let count: i64 = next
            .connection
            .query_row(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
                 SELECT count(*) FROM n",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(count, 1000);
    }

    #[test]
    fn a_connection_inside_a_transaction_is_closed_instead() {
        assert!(!kept_after("BEGIN"));
    }

    #[test]
    fn a_reused_connection_reports_no_insert_yet() {
        let pool = Pool::default();
        let lease = taken(&pool);
        lease
            .connection
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
            .unwrap();
        assert_eq!(lease.connection.last_insert_rowid(), 1);
        pool.give_back(lease);
        assert_eq!(taken(&pool).connection.last_insert_rowid(), 0);
    }

    #[test]
    fn no_more_than_the_idle_limit_is_kept() {
        let pool = Pool::default();
        let leases: Vec<Lease> = (0..MAX_IDLE + 3).map(|_| taken(&pool)).collect();
        for lease in leases {
            pool.give_back(lease);
        }
        assert_eq!(pool.idle.lock().unwrap().len(), MAX_IDLE);
    }
}
