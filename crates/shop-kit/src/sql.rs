//! The component's SQLite database (Spin `fermyon:spin/sqlite`): opened once per instance,
//! migrated on open, with explicit transactions.

use anyhow::anyhow;
use spin_sdk::sqlite::{Connection, QueryResult, RowResult, Value};

use crate::migrate::{migrate, Migration, SchemaDb};
use crate::redo::RedoMark;

/// An open, migrated database.
pub struct Db {
    conn: Connection,
    /// The event that this connection retries, if any (see `pending`).
    pub redo: RedoMark,
}

impl Db {
    /// Opens the database granted under `label` and applies pending migrations.
    pub fn open(label: &str, migrations: &[Migration]) -> anyhow::Result<Self> {
        let conn =
            Connection::open(label).map_err(|e| anyhow!("opening database {label}: {e:?}"))?;
        let db = Db {
            conn,
            redo: RedoMark::default(),
        };
        // No `PRAGMA busy_timeout` here: Spin opens local databases with rusqlite, whose
        // connections already wait 5 s for a lock (this project's host waits too), and a libSQL
        // server refuses the PRAGMA. Sent anyway, it cost a statement per instance: SQLite
        // parses a PRAGMA anew on every run, and on libSQL every statement is a round trip.
        migrate(&mut Schema(&db), migrations)?;
        Ok(db)
    }

    pub fn exec(&self, sql: &str, params: &[Value]) -> anyhow::Result<QueryResult> {
        self.conn
            .execute(sql, params)
            .map_err(|e| anyhow!("sqlite: {e:?} in {}", first_words(sql)))
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`): committed when `f` succeeds,
    /// rolled back otherwise.
    pub fn transaction<T, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        self.exec("BEGIN IMMEDIATE", &[])?;
        match f() {
            Ok(value) => match self.exec("COMMIT", &[]) {
                Ok(_) => Ok(value),
                Err(e) => {
                    let _ = self.exec("ROLLBACK", &[]);
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = self.exec("ROLLBACK", &[]);
                Err(e)
            }
        }
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

struct Schema<'a>(&'a Db);

impl SchemaDb for Schema<'_> {
    fn user_version(&mut self) -> anyhow::Result<i64> {
        let r = self.0.exec("PRAGMA user_version", &[])?;
        let version = r.rows.first().map(|row| int(row, 0)).unwrap_or(0);
        if version == 0 {
            // A new database: write-ahead logging lets readers proceed during writes.
            // Only meaningful for a local file; a libSQL server refuses it, which is harmless.
            let _ = self.0.exec("PRAGMA journal_mode = WAL", &[]);
        }
        Ok(version)
    }

    fn apply(&mut self, version: i64, statements: &[&str]) -> anyhow::Result<()> {
        let db = self.0;
        db.transaction(|| {
            let current = db
                .exec("PRAGMA user_version", &[])?
                .rows
                .first()
                .map(|row| int(row, 0))
                .unwrap_or(0);
            if current >= version {
                return Ok(());
            }
            for s in statements {
                db.exec(s, &[])?;
            }
            db.exec(&format!("PRAGMA user_version = {version}"), &[])?;
            Ok(())
        })
    }
}

/// Column `i` as an integer (0 when NULL or not an integer).
pub fn int(row: &RowResult, i: usize) -> i64 {
    opt_int(row, i).unwrap_or(0)
}

pub fn opt_int(row: &RowResult, i: usize) -> Option<i64> {
    match row.values.get(i) {
        Some(Value::Integer(n)) => Some(*n),
        _ => None,
    }
}

/// Column `i` as text (empty when NULL).
pub fn text(row: &RowResult, i: usize) -> String {
    opt_text(row, i).unwrap_or_default()
}

pub fn opt_text(row: &RowResult, i: usize) -> Option<String> {
    match row.values.get(i) {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Parameter helpers.
pub fn t(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

pub fn i(n: i64) -> Value {
    Value::Integer(n)
}

pub fn opt_i(n: Option<i64>) -> Value {
    n.map(Value::Integer).unwrap_or(Value::Null)
}
