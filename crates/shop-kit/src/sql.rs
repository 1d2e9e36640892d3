//! The function's SQL database: SQLite (Spin's `sqlite` interface, a label granted in
//! `sqlite_databases`) or PostgreSQL (Spin's `spin:postgres@4.0.0`, a connection string),
//! chosen per deployment by the component variables `sql_store` and `postgres_url`
//! (docs/adr/0009). Opened once per instance and migrated on open.
//!
//! Statements are written once, in the SQL both dialects share, with SQLite's `?` / `?N`
//! placeholders; the PostgreSQL adapter renumbers them (`placeholders`). Results come back as
//! the same [`Value`]s from either store. Write transactions serialize a function's writers on
//! both stores (`BEGIN IMMEDIATE`; a transaction-scoped advisory lock on PostgreSQL), so what
//! the functions rely on (gap-free stream positions, no oversell, one owner per idempotency
//! key) holds the same way on each.

mod placeholders;
mod postgres;
mod sqlite;

use crate::migrate::{migrate, Migration, SchemaDb};
use crate::redo::RedoMark;

/// A column or parameter value: the types the functions store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Integer(i64),
    Text(String),
}

/// One result row, its values in the statement's column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub values: Vec<Value>,
}

/// A statement's result rows (none for a statement without `RETURNING`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    pub rows: Vec<Row>,
}

/// A function's migrations, one list per dialect. Each list starts at version 1 and is applied
/// in order; the PostgreSQL list builds in one step the schema the SQLite list reached.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub sqlite: &'static [Migration],
    pub postgres: &'static [Migration],
}

/// The PostgreSQL migrations of a SQL function: version 1 the event-delivery tables every such
/// function keeps (shop-kit's outbox, inbox, pending events, dead letters, lease and wake),
/// version 2 the function's `own` tables, version 3 its consumers' `streams` (the outbox's
/// stream table, whose backfill names the function's consumers), version 4 the relay's row.
pub const fn postgres_migrations(own: &'static str, streams: &'static str) -> [Migration; 4] {
    [
        Migration {
            version: 1,
            name: "postgres/0001_event_delivery",
            sql: include_str!("../migrations/postgres/0001_event_delivery.sql"),
        },
        Migration {
            version: 2,
            name: "postgres/0002_own",
            sql: own,
        },
        Migration {
            version: 3,
            name: "postgres/0003_consumer_streams",
            sql: streams,
        },
        Migration {
            version: 4,
            name: "postgres/0004_relay_cursor",
            sql: include_str!("../migrations/postgres/0004_relay_cursor.sql"),
        },
    ]
}

/// Which store a deployment chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// The SQLite database granted under the function's label.
    Sqlite,
    /// The PostgreSQL database at this connection string.
    Postgres { url: String },
}

impl Store {
    /// The store the variables `sql_store` (`sqlite`, the default, or `postgres`) and
    /// `postgres_url` name. Anything else is refused rather than guessed at, so a mistyped
    /// setting never sends writes to a store nobody reads.
    pub fn chosen(sql_store: &str, postgres_url: &str) -> anyhow::Result<Store> {
        match sql_store.trim() {
            "" | "sqlite" => Ok(Store::Sqlite),
            "postgres" if postgres_url.trim().is_empty() => {
                anyhow::bail!("sql_store is postgres but postgres_url is empty")
            }
            "postgres" => Ok(Store::Postgres {
                url: postgres_url.trim().to_string(),
            }),
            other => anyhow::bail!("sql_store must be sqlite or postgres, not {other:?}"),
        }
    }

    fn from_variables() -> anyhow::Result<Store> {
        let get = |name| spin_sdk::variables::get(name).unwrap_or_default();
        Store::chosen(&get("sql_store"), &get("postgres_url"))
    }
}

/// The function's store could not be opened (unreachable, out of connections, misconfigured):
/// answered as 503 `UNAVAILABLE`, since a later attempt may succeed, with the cause logged only.
#[derive(Debug)]
pub struct StoreUnavailable(pub anyhow::Error);

impl std::fmt::Display for StoreUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the SQL store is unavailable: {:#}", self.0)
    }
}

impl std::error::Error for StoreUnavailable {}

/// What each store's adapter does for [`Db`].
trait Adapter {
    fn exec(&self, sql: &str, params: &[Value]) -> anyhow::Result<Rows>;
    /// Starts a write transaction, waiting for the function's other writers.
    fn begin(&self) -> anyhow::Result<()>;
    /// Whether one statement on its own already waits for the function's other writers (SQLite:
    /// its implicit transaction takes the write lock), so [`Db::write`] needs no transaction.
    fn statement_serializes(&self) -> bool {
        false
    }
    /// The schema version, read before migrating (0 for a new database).
    fn schema_version(&self) -> anyhow::Result<i64>;
    /// The schema version, read again inside the migrating transaction.
    fn locked_schema_version(&self) -> anyhow::Result<i64>;
    fn set_schema_version(&self, version: i64) -> anyhow::Result<()>;
}

/// An open, migrated database.
pub struct Db {
    conn: Box<dyn Adapter>,
    /// The event that this connection retries, if any (see `pending`).
    pub redo: RedoMark,
}

impl Db {
    /// Opens the store the deployment chose (SQLite under `label`, or PostgreSQL) and applies
    /// its pending migrations.
    pub fn open(label: &str, schema: &Schema) -> anyhow::Result<Self> {
        let (conn, migrations) =
            Self::connect(label, schema).map_err(|e| anyhow::Error::new(StoreUnavailable(e)))?;
        let db = Db {
            conn,
            redo: RedoMark::default(),
        };
        migrate(&mut Versions(&db), migrations)?;
        Ok(db)
    }

    /// The chosen store's connection and the migrations for its dialect.
    fn connect(
        label: &str,
        schema: &Schema,
    ) -> anyhow::Result<(Box<dyn Adapter>, &'static [Migration])> {
        Ok(match Store::from_variables()? {
            Store::Sqlite => (Box::new(sqlite::Sqlite::open(label)?), schema.sqlite),
            Store::Postgres { url } => (
                Box::new(postgres::Postgres::open(label, &url)?),
                schema.postgres,
            ),
        })
    }

    pub fn exec(&self, sql: &str, params: &[Value]) -> anyhow::Result<Rows> {
        self.conn.exec(sql, params)
    }

    /// Runs one writing statement serialized with the function's other writers, as a
    /// transaction of its own: what it reads cannot change before it writes.
    pub fn write(&self, sql: &str, params: &[Value]) -> anyhow::Result<Rows> {
        if self.conn.statement_serializes() {
            self.exec(sql, params)
        } else {
            self.transaction(|| self.exec(sql, params))
        }
    }

    /// Runs `f` in a write transaction, which waits for the function's other writers:
    /// committed when `f` succeeds, rolled back otherwise. A relay lease claimed in a
    /// transaction that rolls back is given up with it (`claim`).
    pub fn transaction<T, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let claimed_before = crate::claim::held();
        self.conn.begin()?;
        let result = match f() {
            Ok(value) => self.exec("COMMIT", &[]).map(|_| value).map_err(E::from),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = self.exec("ROLLBACK", &[]);
            crate::claim::set(claimed_before);
        }
        result
    }
}

/// The migrator's view of a database.
struct Versions<'a>(&'a Db);

impl SchemaDb for Versions<'_> {
    fn user_version(&mut self) -> anyhow::Result<i64> {
        self.0.conn.schema_version()
    }

    fn apply(&mut self, version: i64, statements: &[&str]) -> anyhow::Result<()> {
        let db = self.0;
        db.transaction(|| {
            if db.conn.locked_schema_version()? >= version {
                return Ok(());
            }
            for s in statements {
                db.exec(s, &[])?;
            }
            db.conn.set_schema_version(version)
        })
    }
}

/// The first words of a statement, to name it in an error without its data.
fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

/// Column `i` as an integer (0 when NULL or not an integer).
pub fn int(row: &Row, i: usize) -> i64 {
    opt_int(row, i).unwrap_or(0)
}

pub fn opt_int(row: &Row, i: usize) -> Option<i64> {
    match row.values.get(i) {
        Some(Value::Integer(n)) => Some(*n),
        _ => None,
    }
}

/// Column `i` as text (empty when NULL).
pub fn text(row: &Row, i: usize) -> String {
    opt_text(row, i).unwrap_or_default()
}

pub fn opt_text(row: &Row, i: usize) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_chosen_explicitly() {
        assert_eq!(Store::chosen("", "").unwrap(), Store::Sqlite);
        assert_eq!(Store::chosen("sqlite", "host=x").unwrap(), Store::Sqlite);
        assert_eq!(
            Store::chosen(" postgres ", " host=db ").unwrap(),
            Store::Postgres {
                url: "host=db".into()
            }
        );
        let empty = Store::chosen("postgres", " ").unwrap_err().to_string();
        assert!(empty.contains("postgres_url is empty"), "{empty}");
        let typo = Store::chosen("postgresql", "host=db")
            .unwrap_err()
            .to_string();
        assert!(typo.contains("\"postgresql\""), "{typo}");
    }
}
