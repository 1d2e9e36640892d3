//! What the migration tests share: each function's SQLite migration files and a real SQLite
//! database the shared migrator applies them to.

use std::path::PathBuf;

use rusqlite::Connection;
use shop_kit::migrate::{Migration, SchemaDb};

/// An SQLite database, its schema version in `PRAGMA user_version` as the components keep it.
pub struct Sqlite(pub Connection);

impl SchemaDb for Sqlite {
    fn user_version(&mut self) -> anyhow::Result<i64> {
        Ok(self.0.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn apply(&mut self, version: i64, statements: &[&str]) -> anyhow::Result<()> {
        let tx = self.0.transaction()?;
        for s in statements {
            tx.execute(s, [])?;
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        Ok(())
    }
}

/// The repository's `migrations` directory: one directory of files per function.
pub fn migrations_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
}

/// The SQLite migration files of one function, in version order, leaked to `'static` like
/// `include_str!` would give them.
pub fn files(function: &str) -> Vec<Migration> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(migrations_dir().join(function))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            assert!(
                name.starts_with(&format!("{:04}_", i + 1)),
                "{function}/{name} is out of sequence"
            );
            Migration {
                version: i as i64 + 1,
                name: Box::leak(name.into_boxed_str()),
                sql: Box::leak(std::fs::read_to_string(p).unwrap().into_boxed_str()),
            }
        })
        .collect()
}
