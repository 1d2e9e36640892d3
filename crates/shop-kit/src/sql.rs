//! The function's SQL database: SQLite (Spin's `sqlite` interface, a label granted in
//! `sqlite_databases`) or PostgreSQL (Spin's `spin:postgres@4.0.0`, a connection string),
//! chosen per deployment by the component variables `sql_store` and `postgres_url`
//! (docs/adr/0009). Opened once per instance, and migrated by its first statement: a first
//! transaction reads the schema version inside itself, where the read takes no lock of its own;
//! a first statement outside one reads it just before.
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
    /// The schema version read inside a transaction that is not migrating, without writing;
    /// an error (no version recorded yet) leaves the transaction to be rolled back.
    fn schema_version_in_transaction(&self) -> anyhow::Result<i64>;
    fn set_schema_version(&self, version: i64) -> anyhow::Result<()>;
}

/// An open database, migrated by its first statement.
pub struct Db {
    conn: Box<dyn Adapter>,
    /// The event that this connection retries, if any (see `pending`).
    pub redo: RedoMark,
    label: String,
    /// The migrations of the store's dialect until the schema version has been checked.
    unchecked: std::cell::Cell<Option<&'static [Migration]>>,
}

thread_local! {
    /// The databases (by label) whose schema this instance found at the newest version: a later
    /// handle on one needs no check, as a schema never goes back. One instance per thread, as
    /// for `claim`.
    static CURRENT: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Db {
    /// Opens the store the deployment chose (SQLite under `label`, or PostgreSQL); its pending
    /// migrations are applied before its first statement runs.
    pub fn open(label: &str, schema: &Schema) -> anyhow::Result<Self> {
        let (conn, migrations) =
            Self::connect(label, schema).map_err(|e| anyhow::Error::new(StoreUnavailable(e)))?;
        Ok(Self::on(label, conn, migrations))
    }

    fn on(label: &str, conn: Box<dyn Adapter>, migrations: &'static [Migration]) -> Self {
        let current = CURRENT.with(|c| c.borrow().iter().any(|l| l == label));
        Db {
            conn,
            redo: RedoMark::default(),
            label: label.to_string(),
            unchecked: std::cell::Cell::new((!current).then_some(migrations)),
        }
    }

    /// Records the schema as checked, for this handle and the instance's later ones.
    fn checked(&self) {
        self.unchecked.set(None);
        CURRENT.with(|c| c.borrow_mut().push(self.label.clone()));
    }

    /// Applies the pending migrations, unless the schema version was checked already; a
    /// failed migration is tried again by the next statement.
    fn migrate_unchecked(&self) -> anyhow::Result<()> {
        let Some(migrations) = self.unchecked.take() else {
            return Ok(());
        };
        match migrate(&mut Versions(self), migrations) {
            Ok(_) => {
                self.checked();
                Ok(())
            }
            Err(e) => {
                self.unchecked.set(Some(migrations));
                Err(e)
            }
        }
    }

    /// Inside a transaction just begun: whether the schema is at the newest version (then
    /// checked for good), read without a statement of its own outside the transaction.
    fn schema_current_in_transaction(&self) -> bool {
        let Some(migrations) = self.unchecked.get() else {
            return true;
        };
        let current = self
            .conn
            .schema_version_in_transaction()
            .is_ok_and(|v| v == migrations.len() as i64);
        if current {
            self.checked();
        }
        current
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
        self.migrate_unchecked()?;
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
        if !self.schema_current_in_transaction() {
            // Migrating takes transactions of its own: this one starts again after it.
            let _ = self.conn.exec("ROLLBACK", &[]);
            self.migrate_unchecked()?;
            self.conn.begin()?;
        }
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
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// A store that logs what it is asked, at schema version `version`.
    #[derive(Default)]
    struct Logged {
        log: RefCell<Vec<String>>,
        version: Cell<i64>,
    }

    struct Fake(Rc<Logged>);

    impl Fake {
        fn note(&self, what: &str) {
            self.0.log.borrow_mut().push(what.to_string());
        }
    }

    impl Adapter for Fake {
        fn exec(&self, sql: &str, _: &[Value]) -> anyhow::Result<Rows> {
            self.note(sql);
            Ok(Rows::default())
        }
        fn begin(&self) -> anyhow::Result<()> {
            self.note("BEGIN");
            Ok(())
        }
        fn schema_version(&self) -> anyhow::Result<i64> {
            self.note("version");
            Ok(self.0.version.get())
        }
        fn locked_schema_version(&self) -> anyhow::Result<i64> {
            self.note("locked version");
            Ok(self.0.version.get())
        }
        fn schema_version_in_transaction(&self) -> anyhow::Result<i64> {
            self.note("version in transaction");
            Ok(self.0.version.get())
        }
        fn set_schema_version(&self, version: i64) -> anyhow::Result<()> {
            self.note(&format!("set version {version}"));
            self.0.version.set(version);
            Ok(())
        }
    }

    const MIGRATIONS: &[Migration] = &[
        Migration {
            version: 1,
            name: "0001_a",
            sql: "CREATE TABLE a (x)",
        },
        Migration {
            version: 2,
            name: "0002_b",
            sql: "CREATE TABLE b (x)",
        },
    ];

    /// A database at schema `version` and the log of what it is asked.
    fn at_version(version: i64) -> (Db, Rc<Logged>) {
        on_label("test", version)
    }

    /// The same under another database label.
    fn on_label(label: &str, version: i64) -> (Db, Rc<Logged>) {
        let logged = Rc::new(Logged::default());
        logged.version.set(version);
        let db = Db::on(label, Box::new(Fake(logged.clone())), MIGRATIONS);
        (db, logged)
    }

    fn write(db: &Db) {
        db.transaction(|| db.exec("INSERT INTO a VALUES (1)", &[]))
            .unwrap();
    }

    #[test]
    fn an_up_to_date_schema_is_checked_once_inside_the_first_transaction() {
        let (db, logged) = at_version(2);
        write(&db);
        write(&db);
        db.exec("SELECT x FROM a", &[]).unwrap();
        assert_eq!(
            *logged.log.borrow(),
            [
                "BEGIN",
                "version in transaction",
                "INSERT INTO a VALUES (1)",
                "COMMIT",
                "BEGIN",
                "INSERT INTO a VALUES (1)",
                "COMMIT",
                "SELECT x FROM a",
            ]
        );
    }

    #[test]
    fn an_old_schema_found_by_the_first_transaction_is_migrated_before_it_runs() {
        let (db, logged) = at_version(1);
        write(&db);
        let log = logged.log.borrow();
        let after_rollback = log.iter().position(|s| s == "ROLLBACK").unwrap();
        assert_eq!(log[..after_rollback], ["BEGIN", "version in transaction"]);
        assert!(log.contains(&"CREATE TABLE b (x)".to_string()), "{log:?}");
        assert!(!log.contains(&"CREATE TABLE a (x)".to_string()), "{log:?}");
        assert_eq!(
            log[log.len() - 3..],
            ["BEGIN", "INSERT INTO a VALUES (1)", "COMMIT"]
        );
        assert_eq!(logged.version.get(), 2);
    }

    #[test]
    fn a_later_handle_on_a_database_the_instance_checked_needs_no_check() {
        let (first, _) = on_label("orders", 2);
        let (other, other_log) = on_label("inventory", 2);
        write(&first);
        let (later, later_log) = on_label("orders", 2);
        later.exec("SELECT x FROM a", &[]).unwrap();
        assert_eq!(*later_log.log.borrow(), ["SELECT x FROM a"]);
        other.exec("SELECT x FROM a", &[]).unwrap();
        assert_eq!(*other_log.log.borrow(), ["version", "SELECT x FROM a"]);
    }

    #[test]
    fn a_first_statement_outside_a_transaction_reads_the_version_first() {
        let (db, logged) = at_version(2);
        db.exec("SELECT x FROM a", &[]).unwrap();
        db.exec("SELECT x FROM a", &[]).unwrap();
        assert_eq!(
            *logged.log.borrow(),
            ["version", "SELECT x FROM a", "SELECT x FROM a"]
        );
    }

    #[test]
    fn a_database_newer_than_the_component_is_refused_by_every_statement() {
        let (db, _) = at_version(3);
        for _ in 0..2 {
            let err = db.exec("SELECT x FROM a", &[]).unwrap_err().to_string();
            assert!(err.contains("newer than this component"), "{err}");
        }
        assert!(db
            .transaction(|| db.exec("INSERT INTO a VALUES (1)", &[]))
            .is_err());
    }

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
