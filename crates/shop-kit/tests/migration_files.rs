//! Every `migrations/<function>/NNNN_name.sql` in the repository applies, in order, to a fresh
//! real SQLite database through the shared migrator (and statement splitter), and re-running
//! the migrator applies nothing.

mod common;

use common::{files, migrations_dir, Sqlite};
use rusqlite::Connection;
use shop_kit::migrate::migrate;

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
        let tables: i64 =
            db.0.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN \
                 ('outbox', 'inbox_streams', 'pending_events', 'dead_letters', 'wake')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 5, "{function} needs the event delivery's tables");
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
    use shop_kit::lease::sql::{settle_sql, NEEDED, RELEASE};
    use shop_kit::outbox::TAKE_LEASE;
    for function in ["orders", "inventory", "billing"] {
        let mut db = Sqlite(Connection::open_in_memory().unwrap());
        migrate(&mut db, &files(function)).unwrap();
        let c = &db.0;
        let settle = settle_sql();
        // (holder, expiry) after a settle of `through` by `holder` at expiry `until`.
        let settled = |through: i64, holder: &str, until: i64| -> String {
            c.query_row(&settle, rusqlite::params![through, holder, until], |r| {
                Ok(format!(
                    "{} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?
                ))
            })
            .unwrap()
        };
        assert!(
            texts(c, NEEDED, &[&100]).is_empty(),
            "{function}: nothing unsent"
        );
        c.execute_batch(
            "INSERT INTO outbox (seq, id, type, occurred_at, traceparent, data) \
             VALUES (1, 'e1', 'x', 't', 'tp', '{}'), (2, 'e2', 'x', 't', 'tp', '{}')",
        )
        .unwrap();
        assert_eq!(
            texts(c, NEEDED, &[&100]).len(),
            1,
            "{function}: unsent, free"
        );
        assert_eq!(
            texts(c, TAKE_LEASE, &[&"a", &100, &2100]),
            ["Integer(0)"],
            "{function}: taken, the cursor before the first event"
        );
        assert!(
            texts(c, TAKE_LEASE, &[&"b", &200, &2200]).is_empty(),
            "held by a"
        );
        assert!(texts(c, NEEDED, &[&200]).is_empty(), "a sends them");
        assert_eq!(texts(c, NEEDED, &[&2100]).len(), 1, "expired at 2100");
        assert_eq!(
            settled(1, "a", 4000),
            "a 4000",
            "{function}: e2 left: renewed"
        );
        assert_eq!(
            settled(2, "a", 5000),
            "a 0",
            "{function}: all sent: released"
        );
        assert!(
            texts(c, NEEDED, &[&0]).is_empty(),
            "{function}: sent through 2"
        );
        assert_eq!(settled(1, "a", 6000), "a 0", "{function}: never moves back");
        // A new event, and the lease taken over by b while a stalled past its expiry.
        c.execute_batch(
            "INSERT INTO outbox (seq, id, type, occurred_at, traceparent, data) \
             VALUES (3, 'e3', 'x', 't', 'tp', '{}')",
        )
        .unwrap();
        assert_eq!(texts(c, TAKE_LEASE, &[&"a", &0, &2000]), ["Integer(2)"]);
        assert_eq!(
            texts(c, TAKE_LEASE, &[&"b", &2000, &4000]),
            ["Integer(2)"],
            "taken over"
        );
        assert_eq!(settled(2, "a", 9000), "b 4000", "{function}: a lost it");
        texts(c, RELEASE, &[&"a"]);
        assert!(
            texts(c, NEEDED, &[&3000]).is_empty(),
            "only the holder releases"
        );
        texts(c, RELEASE, &[&"b"]);
        assert_eq!(
            texts(c, NEEDED, &[&3000]).len(),
            1,
            "{function}: released, e3 unsent"
        );
    }
}

#[test]
fn the_relay_row_starts_after_what_was_published() {
    for function in ["orders", "inventory", "billing"] {
        let all = files(function);
        let sent_through = |published: &str| -> Vec<String> {
            let mut db = Sqlite(Connection::open_in_memory().unwrap());
            migrate(&mut db, before(&all, "relay_cursor")).unwrap();
            db.0.execute_batch(&format!(
                "INSERT INTO outbox (seq, id, type, occurred_at, traceparent, data, partition) \
                 VALUES (1, 'e1', 'x', 't', 'tp', '{{}}', 0), (2, 'e2', 'x', 't', 'tp', '{{}}', 0), \
                        (3, 'e3', 'x', 't', 'tp', '{{}}', 0); \
                 UPDATE outbox SET published = 1 WHERE seq IN ({published});"
            ))
            .unwrap();
            migrate(&mut db, &all).unwrap();
            texts(&db.0, "SELECT sent_through FROM outbox_relay", &[])
        };
        assert_eq!(
            sent_through("1, 2"),
            ["Integer(2)"],
            "{function}: e3 unsent"
        );
        assert_eq!(
            sent_through("1, 2, 3"),
            ["Integer(3)"],
            "{function}: all sent"
        );
        assert_eq!(sent_through("0"), ["Integer(0)"], "{function}: none sent");
    }
}

/// The migrations before the one named `*_<name>`.
fn before<'a>(
    all: &'a [shop_kit::migrate::Migration],
    name: &str,
) -> &'a [shop_kit::migrate::Migration] {
    let at = all.iter().position(|m| m.name.ends_with(name));
    &all[..at.unwrap_or_else(|| panic!("no migration {name}"))]
}

#[test]
fn each_consumer_keeps_its_position_in_the_streams_of_older_events() {
    use shop_kit::outbox::STREAM_APPEND;
    use shop_kit::subscriptions::subscribers;
    for function in ["orders", "inventory", "billing"] {
        let all = files(function);
        let mut db = Sqlite(Connection::open_in_memory().unwrap());
        migrate(&mut db, before(&all, "consumer_streams")).unwrap();
        // Two events of partition 2 and one of partition 0, numbered per partition.
        db.0.execute_batch(
            "INSERT INTO outbox (seq, id, type, occurred_at, traceparent, data, partition, pseq) \
             VALUES (1, 'e1', 'x', 't', 'tp', '{}', 2, 1), (2, 'e2', 'x', 't', 'tp', '{}', 0, 1), \
                    (3, 'e3', 'x', 't', 'tp', '{}', 2, 2);",
        )
        .unwrap();
        migrate(&mut db, &all).unwrap();
        let c = &db.0;
        for consumer in subscribers(function) {
            assert_eq!(
                texts(
                    c,
                    "SELECT partition || ':' || pseq || '@' || position FROM outbox_streams \
                     WHERE consumer = ? ORDER BY position",
                    &[&consumer]
                ),
                ["2:1@1", "0:1@2", "2:2@3"],
                "{function} -> {consumer}: every older event, at its old number"
            );
            // A new event of partition 2 follows in each consumer's stream.
            assert_eq!(
                texts(c, STREAM_APPEND, &[&consumer, &2, &4]),
                ["Integer(3)"],
                "{function} -> {consumer}: the number it returns"
            );
            assert_eq!(
                texts(
                    c,
                    "SELECT pseq FROM outbox_streams WHERE consumer = ? AND position = 4",
                    &[&consumer]
                ),
                ["Integer(3)"],
                "{function} -> {consumer}"
            );
        }
        let consumers = subscribers(function).count();
        assert_eq!(
            texts(c, "SELECT count(*) FROM outbox_streams", &[]),
            [format!("Integer({})", consumers * 4)],
            "{function}: no stream of a consumer that is not one"
        );
    }
}

#[test]
fn the_delivery_statements_work_on_every_schema_and_keep_older_positions() {
    use shop_kit::inbox::sql::STANDING;
    use shop_kit::pending::sql::{DUE, NEXT_DUE};
    for function in ["orders", "inventory", "billing"] {
        let all = files(function);
        // The schema before partitions, with a position, a parked event and an outbox row.
        let mut db = Sqlite(Connection::open_in_memory().unwrap());
        migrate(&mut db, before(&all, "partitioned_delivery")).unwrap();
        let c = &db.0;
        c.execute_batch(
            "INSERT INTO inbox VALUES ('billing', 7); \
             INSERT INTO dead_letters VALUES ('billing', 3, 'x', \
               '{\"id\":\"e3\",\"data\":{\"order_id\":\"o3\"}}', 'boom', 5, 't'); \
             INSERT INTO outbox (seq, id, type, occurred_at, traceparent, data) \
               VALUES (1, 'e1', 'x', 't', 'tp', '{}');",
        )
        .unwrap();
        migrate(&mut db, &all).unwrap();
        let c = &db.0;
        assert_eq!(
            texts(
                c,
                "SELECT last_seq FROM inbox_streams WHERE source = 'billing' AND partition = 0",
                &[]
            ),
            ["Integer(7)"],
            "{function}: the position becomes partition 0's"
        );
        assert_eq!(
            texts(c, "SELECT id || ' ' || order_key || ' ' || json_extract(payload, '$.partition') FROM dead_letters", &[]),
            ["e3 o3 0"],
            "{function}: a parked event keeps its id"
        );
        assert_eq!(
            texts(c, "SELECT DISTINCT pseq FROM outbox_streams", &[]),
            ["Integer(1)"]
        );
        // Order o1 has a pending event at seq 2 and one behind it at seq 3; o2 one at seq 4.
        c.execute_batch(
            "INSERT INTO pending_events VALUES ('a', 'billing', 1, 3, 'o1', 'p3', 0, 0, ''); \
             INSERT INTO pending_events VALUES ('b', 'billing', 1, 2, 'o1', 'p2', 1, 900, 'x'); \
             INSERT INTO pending_events VALUES ('c', 'billing', 1, 4, 'o2', 'p4', 1, 500, 'x');",
        )
        .unwrap();
        assert_eq!(
            texts(c, DUE, &[&1000, &10]),
            ["p4", "p2"],
            "{function}: heads only"
        );
        assert_eq!(texts(c, DUE, &[&600, &10]), ["p4"], "{function}: when due");
        assert_eq!(texts(c, NEXT_DUE, &[]), ["Integer(500)"]);
        let standing = |order: &str| -> (Option<i64>, i64) {
            c.query_row(STANDING, rusqlite::params!["billing", 1, order], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
        };
        assert_eq!(standing("o1"), (None, 1), "{function}: o1 waits");
        assert_eq!(standing("o9"), (None, 0), "{function}: o9 does not");
    }
}
