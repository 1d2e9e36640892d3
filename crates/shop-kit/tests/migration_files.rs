//! Every `migrations/<function>/NNNN_name.sql` in the repository applies, in order, to a fresh
//! real SQLite database through the shared migrator (and statement splitter), and re-running
//! the migrator applies nothing.

use std::path::PathBuf;

use rusqlite::Connection;
use shop_kit::migrate::{migrate, Migration, SchemaDb};

struct Sqlite(Connection);

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

fn migrations_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
}

/// The migration files of one function, in version order, leaked to `'static` like
/// `include_str!` would give them.
fn files(function: &str) -> Vec<Migration> {
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

#[test]
fn every_function_schema_applies_to_a_fresh_database_once() {
    let mut functions = 0;
    for entry in std::fs::read_dir(migrations_dir()).unwrap() {
        let function = entry.unwrap().file_name().to_string_lossy().to_string();
        let migrations = files(&function);
        assert!(!migrations.is_empty(), "{function} has no migrations");
        let mut db = Sqlite(Connection::open_in_memory().unwrap());
        let version = migrate(&mut db, &migrations).unwrap_or_else(|e| panic!("{function}: {e:#}"));
        assert_eq!(version, migrations.len() as i64);
        assert_eq!(
            migrate(&mut db, &migrations).unwrap(),
            version,
            "{function}: second run"
        );
        let outbox: i64 =
            db.0.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('outbox', 'inbox')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(outbox, 2, "{function} needs its outbox and inbox");
        functions += 1;
    }
    assert!(
        functions >= 3,
        "orders, inventory and billing have databases"
    );
}
