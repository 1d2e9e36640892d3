//! WAL checkpoints mostly off the request path. SQLite copies the WAL back into the database
//! file from inside the commit that finds the WAL past 1000 pages (auto-checkpoint), with two
//! fsyncs, and this host runs statements on its executor threads: under load, one commit in a
//! few hundred held a thread for milliseconds, part of the tail of `POST /orders` latency. A
//! thread of the host checkpoints every database file every `EVERY` instead, PASSIVE (it never
//! waits for, nor holds up, readers and writers), so that a commit's auto-checkpoint finds
//! little or nothing left to copy and sync. Auto-checkpoint stays on: only a checkpoint that
//! holds writers back while it finishes lets the WAL start over under a steady stream of
//! writes, and it keeps the WAL as short as it always was.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use rusqlite::Connection;

/// How often each file is checkpointed: under load, before a WAL reaches 1000 pages.
const EVERY: Duration = Duration::from_millis(50);

/// The thread checkpointing some database files; it stops when this is dropped.
pub(crate) struct Checkpointer {
    _stop: Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing `files` (WAL database files); no thread when there are none (an
    /// app whose stores all live in memory), and one checkpoint per file however many labels
    /// share it.
    pub(crate) fn start(mut files: Vec<PathBuf>) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Ok(Self { _stop: stop });
        }
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut connections: Vec<(PathBuf, Option<Connection>)> =
                    files.into_iter().map(|file| (file, None)).collect();
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    for (file, connection) in &mut connections {
                        if let Err(e) = checkpoint(file, connection) {
                            tracing::debug!(file = %file.display(), error = %e, "checkpoint skipped");
                            *connection = None;
                        }
                    }
                }
            })?;
        Ok(Self { _stop: stop })
    }
}

/// A PASSIVE checkpoint of `file`, on the thread's own connection to it (opened at first use).
fn checkpoint(file: &Path, connection: &mut Option<Connection>) -> rusqlite::Result<()> {
    let connection = match connection {
        Some(connection) => connection,
        None => {
            let opened = Connection::open(file)?;
            crate::sqlite::settings::relaxed_sync(&opened)?;
            connection.insert(opened)
        }
    };
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length of the file at `path`, in 4 KiB pages.
    fn file_pages(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len() / 4096).unwrap_or(0)
    }

    #[test]
    fn the_thread_copies_the_wal_that_commits_left() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let file = dir.path().join("busy.db");
        let writer = Connection::open(&file).unwrap();
        crate::sqlite::settings::enable_wal(&writer).unwrap();
        writer.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        // 2 MiB, short of auto-checkpoint's 1000 pages: every page stays in the WAL.
        for _ in 0..8 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(262144))", [])
                .unwrap();
        }
        assert!(file_pages(&file) < 100, "a commit checkpointed");

        let _checkpointer = Checkpointer::start(vec![file.clone()]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while file_pages(&file) < 512 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            file_pages(&file) >= 512,
            "the thread copied the WAL into the database file"
        );
    }
}
