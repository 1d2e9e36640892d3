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

/// Rows `sql` returns with `params`, as the single text column of each.
fn texts(db: &Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Vec<String> {
    let mut stmt = db.prepare(sql).unwrap();
    let rows = stmt
        .query_map(params, |r| r.get::<_, rusqlite::types::Value>(0))
        .unwrap();
    rows.map(|v| match v.unwrap() {
        rusqlite::types::Value::Text(s) => s,
        other => format!("{other:?}"),
    })
    .collect()
}

#[test]
fn the_relay_lease_statements_work_on_every_schema_with_an_outbox() {
    use shop_kit::lease::sql::{RELEASE, RENEW, TAKE, TAKEN};
    for function in ["orders", "inventory", "billing"] {
        let mut db = Sqlite(Connection::open_in_memory().unwrap());
        migrate(&mut db, &files(function)).unwrap();
        let c = &db.0;
        assert!(texts(c, TAKEN, &[&100]).is_empty(), "{function}: free");
        assert_eq!(texts(c, TAKE, &[&"a", &100, &2100]), ["a"], "{function}");
        assert!(texts(c, TAKE, &[&"b", &200, &2200]).is_empty(), "held by a");
        assert_eq!(texts(c, TAKEN, &[&200]).len(), 1);
        assert!(texts(c, TAKEN, &[&2100]).is_empty(), "expired at 2100");
        assert_eq!(texts(c, TAKE, &[&"b", &2100, &4100]), ["b"], "taken over");
        assert!(texts(c, RENEW, &[&"a", &5000]).is_empty(), "a lost it");
        assert_eq!(texts(c, RENEW, &[&"b", &5000]), ["b"]);
        assert_eq!(texts(c, TAKEN, &[&4500]).len(), 1, "renewed to 5000");
        texts(c, RELEASE, &[&"a"]);
        assert_eq!(
            texts(c, TAKEN, &[&4500]).len(),
            1,
            "only the holder releases"
        );
        texts(c, RELEASE, &[&"b"]);
        assert!(texts(c, TAKEN, &[&4500]).is_empty(), "{function}: released");
    }
}
