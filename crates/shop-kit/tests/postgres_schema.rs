//! Each function's PostgreSQL schema (shop-kit's event-delivery tables, then
//! `migrations/<function>/postgres/0002_<function>.sql` and `0003_consumer_streams.sql`) builds on a real PostgreSQL the schema
//! its SQLite migrations reach: the same tables, the same columns in
//! the same order with the same NOT NULL, DEFAULT and CHECK, the same primary keys and UNIQUE
//! constraints, and the same named indexes (columns, uniqueness, WHERE), every integer being a
//! bigint, which the app's int8 parameters need.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{files, migrations_dir, Sqlite};
use rusqlite::Connection;
use shop_kit::migrate::{migrate, statements};
use shop_kit::sql::postgres_migrations;
use testkit::PostgresServer;

/// The SQLite rowids the app leaves the database to assign (`INSERT INTO outbox` names no
/// `seq`): identity columns on PostgreSQL. The other rowid aliases, the single-row tables' `id`,
/// are always inserted as 1 and stay plain keys.
const ASSIGNED: [(&str, &str); 1] = [("outbox", "seq")];

/// A table in the terms both databases share.
#[derive(Debug, Default)]
struct Table {
    columns: Vec<Column>,
    /// The primary key's columns, in key order.
    primary_key: Vec<String>,
    /// The UNIQUE constraints' columns.
    unique: BTreeSet<Vec<String>>,
    /// The CHECK constraints' expressions, normalised.
    checks: Vec<String>,
    /// The indexes made by CREATE INDEX, by name.
    indexes: BTreeMap<String, Index>,
}

#[derive(Debug)]
struct Column {
    name: String,
    /// SQLite's declared type or PostgreSQL's `data_type`.
    ty: String,
    not_null: bool,
    /// The DEFAULT expression, normalised.
    default: Option<String>,
    /// Whether the database assigns it: an SQLite rowid alias, a PostgreSQL identity column.
    assigned: bool,
}

#[derive(Debug, PartialEq)]
struct Index {
    unique: bool,
    columns: Vec<String>,
    /// The WHERE of a partial index, normalised.
    predicate: Option<String>,
}

type Schema = BTreeMap<String, Table>;

/// An SQL expression without what the two databases spell differently: PostgreSQL's casts of
/// literals to the column's type, its added parentheses, and whitespace.
fn normalise(expr: &str) -> String {
    expr.replace("::text", "")
        .replace("::bigint", "")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
        .collect()
}

/// The expressions of the `CHECK (...)` clauses in an SQLite `CREATE TABLE`.
fn sqlite_checks(create: &str) -> Vec<String> {
    let mut checks = Vec::new();
    let mut rest = create;
    while let Some(at) = rest.find("CHECK") {
        let clause = rest[at + "CHECK".len()..].trim_start();
        let mut depth = 0;
        let end = clause
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("unbalanced CHECK in {create}"));
        checks.push(normalise(&clause[..=end]));
        rest = &clause[end..];
    }
    checks.sort();
    checks
}

/// The schema the function's SQLite migrations build.
fn sqlite_schema(function: &str) -> Schema {
    let mut db = Sqlite(Connection::open_in_memory().unwrap());
    migrate(&mut db, &files(function)).unwrap_or_else(|e| panic!("{function}: {e:#}"));
    let c = &db.0;
    let strings = |sql: &str, name: &str| -> Vec<String> {
        c.prepare(sql)
            .unwrap()
            .query_map([name], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut stmt = c
        .prepare(
            "SELECT name, sql FROM sqlite_master \
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )
        .unwrap();
    let tables: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut schema = Schema::new();
    for (name, create) in tables {
        let mut table = Table {
            checks: sqlite_checks(&create),
            ..Table::default()
        };
        let mut stmt = c
            .prepare(
                "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) \
                 ORDER BY cid",
            )
            .unwrap();
        let columns: Vec<(String, String, bool, Option<String>, i64)> = stmt
            .query_map([&name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut key: Vec<(i64, String)> = columns
            .iter()
            .filter(|c| c.4 > 0)
            .map(|c| (c.4, c.0.clone()))
            .collect();
        key.sort();
        table.primary_key = key.into_iter().map(|(_, column)| column).collect();
        for (column, ty, not_null, default, pk) in columns {
            // A lone INTEGER PRIMARY KEY is the rowid, which SQLite assigns when none is given.
            let assigned =
                pk > 0 && table.primary_key.len() == 1 && ty.eq_ignore_ascii_case("INTEGER");
            table.columns.push(Column {
                name: column,
                ty,
                // PostgreSQL's primary keys are NOT NULL. SQLite's rowid is never NULL either;
                // its other primary keys could hold NULL (an old bug it keeps), which the app
                // never writes.
                not_null: not_null || pk > 0,
                default: default.as_deref().map(normalise),
                assigned,
            });
        }
        let mut stmt = c
            .prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1)")
            .unwrap();
        let indexes: Vec<(String, bool, String)> = stmt
            .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (index, unique, origin) in indexes {
            let columns = strings(
                "SELECT name FROM pragma_index_info(?1) ORDER BY seqno",
                &index,
            );
            match origin.as_str() {
                // The primary key's autoindex: the key is compared from the columns.
                "pk" => {}
                "u" => {
                    table.unique.insert(columns);
                }
                "c" => {
                    let create =
                        &strings("SELECT sql FROM sqlite_master WHERE name = ?1", &index)[0];
                    let predicate = create.split_once(" WHERE ").map(|(_, w)| normalise(w));
                    table.indexes.insert(
                        index,
                        Index {
                            unique,
                            columns,
                            predicate,
                        },
                    );
                }
                other => panic!("{function}.{name}: index {index} of unknown origin {other}"),
            }
        }
        schema.insert(name, table);
    }
    schema
}

/// The rows `sql` returns on `server`, as their fields.
fn rows(server: &PostgresServer, sql: &str) -> Vec<Vec<String>> {
    server
        .psql(sql)
        .lines()
        .map(|line| line.split('|').map(str::to_string).collect())
        .collect()
}

/// The schema the function's PostgreSQL migrations build (`sql::postgres_migrations`: the shared
/// event-delivery tables, then the function's own file), run statement by statement as the
/// app's splitter cuts them.
fn postgres_schema(function: &str, server: &PostgresServer) -> Schema {
    let file = |name: String| -> &'static str {
        let path = migrations_dir().join(function).join("postgres").join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{function}: {}: {e}", path.display()));
        Box::leak(text.into_boxed_str())
    };
    let own = file(format!("0002_{function}.sql"));
    let streams = file("0003_consumer_streams.sql".into());
    for migration in postgres_migrations(own, streams) {
        let statements = statements(migration.sql);
        assert!(
            !statements.is_empty(),
            "{function}: {} is empty",
            migration.name
        );
        for statement in statements {
            server.psql(&statement);
        }
    }
    let mut schema = Schema::new();
    for row in rows(
        server,
        "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity \
         FROM information_schema.columns WHERE table_schema = 'public' \
         ORDER BY table_name, ordinal_position",
    ) {
        let [table, name, ty, nullable, default, identity] = &row[..] else {
            panic!("{function}: column row {row:?}")
        };
        schema
            .entry(table.clone())
            .or_default()
            .columns
            .push(Column {
                name: name.clone(),
                ty: ty.clone(),
                not_null: nullable == "NO",
                default: (!default.is_empty()).then(|| normalise(default)),
                assigned: identity == "YES",
            });
    }
    for row in rows(
        server,
        "SELECT t.relname, c.relname, i.indisprimary, i.indisunique, \
                coalesce(con.contype::text, ''), \
                (SELECT string_agg(a.attname, ',' ORDER BY k.n) \
                 FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum), \
                coalesce(pg_get_expr(i.indpred, i.indrelid), '') \
         FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid \
         WHERE n.nspname = 'public'",
    ) {
        let [table, index, primary, unique, constraint, columns, predicate] = &row[..] else {
            panic!("{function}: index row {row:?}")
        };
        let table = schema
            .get_mut(table)
            .unwrap_or_else(|| panic!("{function}: index {index} of unknown table {table}"));
        let columns: Vec<String> = columns.split(',').map(str::to_string).collect();
        if primary == "t" {
            table.primary_key = columns;
        } else if constraint == "u" {
            table.unique.insert(columns);
        } else {
            assert!(
                constraint.is_empty(),
                "{function}: index {index} backs a constraint of type {constraint}"
            );
            table.indexes.insert(
                index.clone(),
                Index {
                    unique: unique == "t",
                    columns,
                    predicate: (!predicate.is_empty()).then(|| normalise(predicate)),
                },
            );
        }
    }
    for row in rows(
        server,
        "SELECT t.relname, pg_get_constraintdef(con.oid) \
         FROM pg_constraint con \
         JOIN pg_class t ON t.oid = con.conrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public' AND con.contype = 'c'",
    ) {
        let [table, check] = &row[..] else {
            panic!("{function}: check row {row:?}")
        };
        let check = check.strip_prefix("CHECK").unwrap_or(check);
        schema.get_mut(table).unwrap().checks.push(normalise(check));
    }
    for table in schema.values_mut() {
        table.checks.sort();
    }
    schema
}

/// Asserts the function's PostgreSQL schema is its SQLite schema, saying where they differ.
fn assert_same_schema(function: &str) {
    let sqlite = sqlite_schema(function);
    let server = PostgresServer::start();
    let postgres = postgres_schema(function, &server);
    assert_eq!(
        postgres.keys().collect::<Vec<_>>(),
        sqlite.keys().collect::<Vec<_>>(),
        "{function}: the tables (PostgreSQL, SQLite)"
    );
    let names = |t: &Table| t.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    for (name, lite) in &sqlite {
        let pg = &postgres[name];
        let at = format!("{function}.{name}");
        assert_eq!(
            names(pg),
            names(lite),
            "{at}: the columns in order (PostgreSQL, SQLite)"
        );
        for (l, p) in lite.columns.iter().zip(&pg.columns) {
            let at = format!("{at}.{}", l.name);
            let ty = match l.ty.to_ascii_uppercase().as_str() {
                "INTEGER" => "bigint",
                "TEXT" => "text",
                other => panic!("{at}: no PostgreSQL type decided for SQLite's {other:?}"),
            };
            assert_eq!(p.ty, ty, "{at}: the type on PostgreSQL (SQLite: {})", l.ty);
            assert_eq!(
                p.not_null, l.not_null,
                "{at}: NOT NULL on PostgreSQL, on SQLite"
            );
            assert_eq!(
                p.default, l.default,
                "{at}: the DEFAULT on PostgreSQL, on SQLite"
            );
            let assigned = ASSIGNED.contains(&(name.as_str(), l.name.as_str()));
            assert_eq!(
                p.assigned, assigned,
                "{at}: an identity column on PostgreSQL just where the app lets the database assign it"
            );
            assert!(!assigned || l.assigned, "{at}: a rowid on SQLite");
        }
        assert_eq!(
            pg.primary_key, lite.primary_key,
            "{at}: the PRIMARY KEY (PostgreSQL, SQLite)"
        );
        assert_eq!(
            pg.unique, lite.unique,
            "{at}: the UNIQUE constraints (PostgreSQL, SQLite)"
        );
        assert_eq!(
            pg.checks, lite.checks,
            "{at}: the CHECK constraints (PostgreSQL, SQLite)"
        );
        assert_eq!(
            pg.indexes.keys().collect::<Vec<_>>(),
            lite.indexes.keys().collect::<Vec<_>>(),
            "{at}: the index names (PostgreSQL, SQLite)"
        );
        for (index, l) in &lite.indexes {
            assert_eq!(
                &pg.indexes[index], l,
                "{at}: index {index} (PostgreSQL, SQLite)"
            );
        }
    }
}

#[test]
fn the_orders_postgres_schema_is_its_sqlite_schema() {
    assert_same_schema("orders");
}

#[test]
fn the_inventory_postgres_schema_is_its_sqlite_schema() {
    assert_same_schema("inventory");
}

#[test]
fn the_billing_postgres_schema_is_its_sqlite_schema() {
    assert_same_schema("billing");
}
