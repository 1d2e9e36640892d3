//! The settings every connection of the host gets (busy timeout, WAL, sync, stable query
//! plans), and running a statement without waiting for a lock.

use std::time::Duration;

use rusqlite::Connection;

/// How long a statement waits for another connection's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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

pub(super) fn configure(connection: &Connection) -> rusqlite::Result<()> {
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

#[cfg(test)]
mod tests {
    use spin_host_config::runtime_config::StoreLocation;

    use super::*;
    use crate::sqlite::connection::{query, SqlValue};
    use crate::sqlite::tests::default_database;
    use crate::sqlite::Databases;

    /// A connection to `file` as the host opens one for an instance (the host's own, which
    /// keeps the WAL in place, is closed already).
    fn host_connection(file: std::path::PathBuf) -> Connection {
        let databases = Databases::new(&default_database(StoreLocation::File(file))).unwrap();
        databases.databases["default"].target.connect().unwrap()
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
