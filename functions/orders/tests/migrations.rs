//! The orders migrations on a real SQLite database (natively, through rusqlite): a database
//! at version 1 with data is upgraded to the newest version with its data intact, and
//! migrating again changes nothing.

use orders::store::MIGRATIONS;
use rusqlite::Connection;
use shop_kit::migrate::{migrate, SchemaDb};

/// The migrator's port over a rusqlite connection, mirroring the Spin adapter.
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

fn index_names(db: &Connection) -> Vec<String> {
    let mut stmt = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn upgrading_from_version_1_keeps_every_order() {
    let mut db = Sqlite(Connection::open_in_memory().unwrap());
    assert_eq!(migrate(&mut db, &MIGRATIONS[..1]).unwrap(), 1);
    db.0.execute(
        "INSERT INTO orders (id, customer_id, status, doc) VALUES ('o1', 'c1', 'pending', '{}')",
        [],
    )
    .unwrap();
    assert!(!index_names(&db.0).contains(&"orders_by_status".to_string()));

    let newest = MIGRATIONS.len() as i64;
    assert_eq!(migrate(&mut db, MIGRATIONS).unwrap(), newest);
    assert_eq!(db.user_version().unwrap(), newest);
    let (customer, status): (String, String) =
        db.0.query_row(
            "SELECT customer_id, status FROM orders WHERE id = 'o1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((customer.as_str(), status.as_str()), ("c1", "pending"));
    assert!(index_names(&db.0).contains(&"orders_by_status".to_string()));

    // Up to date: nothing runs again (a second CREATE INDEX would fail).
    assert_eq!(migrate(&mut db, MIGRATIONS).unwrap(), newest);
}

#[test]
fn a_fresh_database_gets_every_table() {
    let mut db = Sqlite(Connection::open_in_memory().unwrap());
    migrate(&mut db, MIGRATIONS).unwrap();
    for table in [
        "orders",
        "idempotency_keys",
        "outbox",
        "inbox_streams",
        "pending_events",
    ] {
        let n: i64 =
            db.0.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "table {table}");
    }
}
