//! Fixtures for the end-to-end tests in `tests/tests/`: the whole shop started on the real host.
//!
//! [`Shop::start`] runs a real `redis-server` and `shop-host up` with the repository's
//! `spin.toml` and the released components, every store in a temporary directory. Tests drive
//! it through the public HTTP API only, and [`Shop::check_invariants`] verifies the saga's
//! promises (docs/adr/0001) for the orders a test touched, through that same API.
//!
//! The SQL functions keep their stores in SQLite files, or, with `SHOP_TEST_SQL_STORE=postgres`,
//! in a fresh PostgreSQL database each ([`SqlStore`]). Tests that tamper with a SQL store do it
//! through helpers that work on either ([`Shop::sql`], [`Shop::poison_inserts`],
//! [`Shop::lock_store`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use testkit::tempfile::TempDir;
use testkit::{
    eventually, free_port, workspace_root, Host, HostOptions, HttpResponse, PostgresServer,
    RedisServer,
};

pub mod webdriver;
mod webhook;

pub use webhook::WebhookReceiver;

/// Raises its flag when dropped. A background thread of a `thread::scope` that loops until the
/// flag is up then stops even when the test body panics; otherwise the scope would wait for it
/// for ever and a failing test would hang instead of failing.
pub struct RaiseOnDrop<'a>(pub &'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The admin bearer token the fixture gives the app.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";
/// The functions' shared secret (`internal_key`) the tests run the app with.
pub const INTERNAL_KEY: &str = "e2e-internal-key";
/// The payment provider's API key (`payment_provider_key`) the tests run the app with.
pub const PROVIDER_KEY: &str = "e2e-provider-key";
/// The delivery bearer token the Cloud fixture gives the app (`event_delivery = "http"`).
pub const DELIVERY_TOKEN: &str = "e2e-delivery-token";
/// How long any saga may take to settle before a test fails (the suite's bounded wait).
pub const SETTLE: Duration = Duration::from_secs(30);
/// The functions that produce or consume events, each with `/events` and `/sweep` routes.
pub const FUNCTIONS: [&str; 4] = ["orders", "inventory", "billing", "notifications"];
/// The functions that keep a SQL store (`sql_store`); the others use key-value stores only.
pub const SQL_FUNCTIONS: [&str; 3] = ["orders", "inventory", "billing"];
/// The error a poisoned store raises ([`Shop::poison_inserts`]).
pub const POISONED: &str = "poisoned by the test";
/// The components the manifest loads.
const COMPONENTS: [&str; 6] = [
    "orders",
    "inventory",
    "billing",
    "notifications",
    "payment_sim",
    "console",
];

/// The shop running on a real host with a real Redis (none for the Cloud manifest); both
/// processes die with it.
pub struct Shop {
    /// The Redis the app's triggers subscribe to (stop/restart it to inject faults).
    pub redis: AppRedis,
    /// The running `shop-host` (kill and restart it to inject faults).
    pub host: Host,
    /// Port of the host's admin listener (`--metrics-listen`), which serves Prometheus text.
    pub metrics_port: u16,
    /// Stock each SKU was seeded with, for the conservation check.
    seeded: Mutex<BTreeMap<String, i64>>,
    /// How many subscriptions each channel gets (see [`subscriptions`]).
    subscriptions: BTreeMap<String, usize>,
    /// Each SQL function's PostgreSQL database, none on SQLite. Held here, not by the host, so
    /// they outlive a host killed and restarted; dropped after it.
    postgres: BTreeMap<&'static str, PostgresServer>,
    dir: TempDir,
}

/// Where the SQL functions ([`SQL_FUNCTIONS`]) keep their stores in this test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlStore {
    /// A SQLite file each, in the test's directory (the default).
    Sqlite,
    /// A fresh PostgreSQL database each, all on one server.
    Postgres,
}

impl SqlStore {
    /// The store `SHOP_TEST_SQL_STORE` names: `sqlite` (also when unset) or `postgres`. Anything
    /// else panics, so that a mistyped setting never passes a run on a store nobody chose.
    pub fn from_env() -> SqlStore {
        const NAME: &str = "SHOP_TEST_SQL_STORE";
        match std::env::var(NAME).as_deref() {
            Err(std::env::VarError::NotPresent) | Ok("sqlite") => SqlStore::Sqlite,
            Ok("postgres") => SqlStore::Postgres,
            Ok(other) => panic!("{NAME} must be sqlite (the default) or postgres, not {other:?}"),
            Err(e) => panic!("{NAME}: {e}"),
        }
    }
}

/// Another process holding a SQL function's whole store exclusively, as a long operator
/// transaction would, until [`StoreLock::release`]: SQLite's exclusive lock on the file, or an
/// ACCESS EXCLUSIVE lock on every table of the PostgreSQL database. Dropped unreleased (a
/// failing test), its stdin closes and the holder ends, rolling back.
#[must_use = "the lock holds until StoreLock::release"]
pub struct StoreLock {
    holder: Child,
    script: ChildStdin,
    /// The holder's stderr, for failure messages.
    log: PathBuf,
}

impl StoreLock {
    /// Commits the holder's transaction and waits for it to end: the store is free again.
    pub fn release(mut self) {
        self.script
            .write_all(b"COMMIT;\n")
            .expect("send the commit");
        drop(self.script);
        let ended = self.holder.wait().expect("the lock holder ends");
        assert!(
            ended.success(),
            "the lock holder failed: {}",
            read_log(&self.log)
        );
    }
}

/// A final order as the orders API reports it.
pub type Order = Value;

/// The Redis of a [`Shop`], absent when its manifest has no Redis trigger. It dereferences to
/// the server so fault tests drive it directly; doing so without one is a test bug and panics.
pub struct AppRedis(Option<RedisServer>);

impl std::ops::Deref for AppRedis {
    type Target = RedisServer;
    fn deref(&self) -> &RedisServer {
        self.0.as_ref().expect("this shop runs without Redis")
    }
}

impl std::ops::DerefMut for AppRedis {
    fn deref_mut(&mut self) -> &mut RedisServer {
        self.0.as_mut().expect("this shop runs without Redis")
    }
}

impl Shop {
    /// Starts Redis and the host for the real app; panics naming what is missing.
    pub fn start() -> Shop {
        Shop::start_with(&[])
    }

    /// [`Shop::start`] with further app variables (`--variable name=value`), e.g. shorter
    /// breaker timeouts for fault tests.
    pub fn start_with(variables: &[(&str, &str)]) -> Shop {
        Shop::start_manifest(
            &workspace_root().join("spin.toml"),
            true,
            SqlStore::from_env(),
            variables,
        )
    }

    /// The app as deployed to Fermyon Cloud: `deploy/cloud/spin.toml`, events delivered over
    /// HTTP with [`DELIVERY_TOKEN`], no Redis at all, and PostgreSQL as the SQL store whatever
    /// `SHOP_TEST_SQL_STORE` says: the Cloud manifest has no SQLite databases (deploy/README.md).
    pub fn start_cloud() -> Shop {
        Shop::start_manifest(
            &workspace_root().join("deploy/cloud/spin.toml"),
            false,
            SqlStore::Postgres,
            &[("delivery_token", DELIVERY_TOKEN)],
        )
    }

    /// Starts the app of `manifest` on `store`, with a Redis for its triggers when `with_redis`.
    fn start_manifest(
        manifest: &Path,
        with_redis: bool,
        store: SqlStore,
        variables: &[(&str, &str)],
    ) -> Shop {
        let binary = workspace_root().join("target/debug/shop-host");
        assert!(
            binary.is_file(),
            "host binary missing: {} (build it: cargo build -p shop-host)",
            binary.display()
        );
        let wasm_dir = workspace_root().join("target/wasm32-wasip2/release");
        let missing: Vec<String> = COMPONENTS
            .iter()
            .map(|name| wasm_dir.join(format!("{name}.wasm")))
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "app components missing: {} (build them: cargo build --release --target \
             wasm32-wasip2 -p orders -p inventory -p billing -p notifications -p payment-sim \
             -p console)",
            missing.join(", ")
        );
        let dir = testkit::tempfile::Builder::new()
            .prefix("shop-e2e")
            .tempdir()
            .expect("create temp dir");
        let runtime_config = write_runtime_config(dir.path());
        let postgres = match store {
            SqlStore::Sqlite => BTreeMap::new(),
            SqlStore::Postgres => postgres_databases(),
        };
        let redis = AppRedis(with_redis.then(RedisServer::start));
        let port = free_port();
        let metrics_port = free_port();
        let origin = format!("http://127.0.0.1:{port}");
        let options = HostOptions::new(binary, manifest)
            .port(port)
            .state_dir(shared_state_dir())
            .runtime_config(runtime_config)
            .process_env("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN_TOKEN)
            .process_env("SPIN_VARIABLE_INTERNAL_KEY", INTERNAL_KEY)
            .process_env("SPIN_VARIABLE_PAYMENT_PROVIDER_KEY", PROVIDER_KEY)
            .variable("app_base_url", &origin)
            .variable("payment_provider_url", &format!("{origin}/payment-sim"))
            .variable("payment_provider_origin", &origin)
            .variable("notification_webhook_origin", &origin)
            .args([
                "--metrics-listen".to_string(),
                format!("127.0.0.1:{metrics_port}"),
            ]);
        let options = match &redis.0 {
            Some(server) => options.variable("redis_address", &server.address()),
            None => options,
        };
        let options = with_postgres(options, &postgres);
        let options = variables.iter().fold(options, |options, (name, value)| {
            options.variable(name, value)
        });
        let host = Host::start(options);
        let shop = Shop {
            redis,
            host,
            metrics_port,
            seeded: Mutex::new(BTreeMap::new()),
            subscriptions: subscriptions(manifest),
            postgres,
            dir,
        };
        shop.wait_subscribed();
        shop
    }

    /// Waits until every subscription of every channel the app consumes listens (after a
    /// (re)start); without Redis, until the app answers.
    pub fn wait_subscribed(&self) {
        if self.redis.0.is_none() {
            let up = eventually(SETTLE, || {
                (self.host.get("/orders/health").status == 200).then_some(())
            });
            assert!(up.is_some(), "the app never answered\n{}", self.logs_tail());
            return;
        }
        let ready = eventually(SETTLE, || {
            self.subscriptions
                .iter()
                .all(|(channel, wanted)| self.redis.subscribers(channel) >= *wanted)
                .then_some(())
        });
        assert!(
            ready.is_some(),
            "the app never subscribed to its channels\n{}",
            self.logs_tail()
        );
    }

    /// The sum of every series of the host's metrics whose line starts with `prefix` (e.g. a
    /// metric and some of its labels).
    pub fn metric_total(&self, prefix: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The dead letters `function` lists (admin).
    pub fn dead_letters(&self, function: &str) -> Vec<Value> {
        let response = self.admin("GET", &format!("/{function}/dead-letters"), &Value::Null);
        assert_eq!(response.status, 200, "{}", response.body);
        response.json()["dead_letters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The host's Prometheus text, scraped from its admin listener.
    pub fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let response = self.host.client().get(&url);
        assert_eq!(response.status, 200, "GET {url}: {}", response.body);
        response.body
    }

    /// The file of a store the runtime config names (`inventory.db`, `notifications.db`, ...),
    /// to tamper with.
    pub fn store_path(&self, file: &str) -> PathBuf {
        self.dir.path().join("stores").join(file)
    }

    /// Runs `sql` on a store file with the sqlite3 shell, as an operator would: a key-value
    /// store (always a SQLite file here), or a SQL store through [`Shop::sql`].
    pub fn sqlite(&self, file: &str, sql: &str) {
        let status = Command::new("sqlite3")
            .args(["-bail", "-cmd", ".timeout 5000"])
            .arg(self.store_path(file))
            .arg(sql)
            .status()
            .expect("run sqlite3 (is it installed?)");
        assert!(status.success(), "sqlite3 failed on {sql}");
    }

    /// Where this shop's SQL functions keep their stores.
    pub fn sql_store(&self) -> SqlStore {
        if self.postgres.is_empty() {
            SqlStore::Sqlite
        } else {
            SqlStore::Postgres
        }
    }

    /// `function`'s PostgreSQL database, `None` on SQLite; panics for a function without a
    /// SQL store, a test bug.
    fn postgres(&self, function: &str) -> Option<&PostgresServer> {
        assert!(
            SQL_FUNCTIONS.contains(&function),
            "{function} has no SQL store (only {SQL_FUNCTIONS:?} do)"
        );
        self.postgres.get(function)
    }

    /// Runs `sql` on `function`'s SQL store, as an operator would: the sqlite3 shell on its
    /// file or psql on its database. Statements in the SQL both dialects share (as the
    /// functions' own are) serve either store.
    pub fn sql(&self, function: &str, sql: &str) {
        match self.postgres(function) {
            Some(database) => {
                database.psql(sql);
            }
            None => self.sqlite(&format!("{function}.db"), sql),
        }
    }

    /// Gives `function`'s relay lease to `holder` for an hour (replacing a live holder's, if
    /// any): its other relays leave their events to it, as to a relay killed while it held it.
    pub fn hold_relay_lease(&self, function: &str, holder: &str) {
        self.sql(
            function,
            &format!(
                "UPDATE outbox_relay SET holder = '{holder}', expires_at = {};",
                now_ms() + 3_600_000
            ),
        );
    }

    /// Makes `function`'s relay lease free, as if it had expired: the next relay takes it.
    pub fn expire_relay_lease(&self, function: &str) {
        self.sql(
            function,
            &format!("UPDATE outbox_relay SET expires_at = {};", now_ms() - 1),
        );
    }

    /// Makes `function`'s store refuse every insert into `table` whose `column` contains
    /// `needle`, failing with [`POISONED`]: a row no retry can write, standing for an event its
    /// consumer can never apply. One poison per store at a time; [`Shop::cure`] lifts it.
    pub fn poison_inserts(
        &self,
        function: &str,
        table: &str,
        column: &str,
        needle: &str,
    ) -> Poison {
        let matching = format!("NEW.{column} LIKE '%{}%'", needle.replace('\'', "''"));
        let sql = match self.sql_store() {
            SqlStore::Sqlite => format!(
                "CREATE TRIGGER poison BEFORE INSERT ON {table} WHEN {matching} \
                 BEGIN SELECT RAISE(ABORT, '{POISONED}'); END;"
            ),
            // A PostgreSQL trigger runs a function; its WHEN sees the row as SQLite's does.
            SqlStore::Postgres => format!(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql \
                   AS $$ BEGIN RAISE EXCEPTION '{POISONED}'; END $$; \
                 CREATE TRIGGER poison BEFORE INSERT ON {table} FOR EACH ROW WHEN ({matching}) \
                   EXECUTE FUNCTION poison();"
            ),
        };
        self.sql(function, &sql);
        Poison {
            function: function.to_string(),
            table: table.to_string(),
        }
    }

    /// Lifts `poison`: its store takes those inserts again.
    pub fn cure(&self, poison: Poison) {
        let sql = match self.sql_store() {
            SqlStore::Sqlite => "DROP TRIGGER poison;".to_string(),
            SqlStore::Postgres => format!(
                "DROP TRIGGER poison ON {}; DROP FUNCTION poison();",
                poison.table
            ),
        };
        self.sql(&poison.function, &sql);
    }

    /// Has another process take `function`'s whole store exclusively (see [`StoreLock`]);
    /// returns once it holds it. The store must exist: the function has served a request.
    /// Meanwhile the function's statements fail on SQLite once the host's busy timeout runs
    /// out, and wait on PostgreSQL, where the app sets no `lock_timeout`
    /// ([`Shop::statements_waiting_for_locks`] sees them).
    pub fn lock_store(&self, function: &str) -> StoreLock {
        let held = self.dir.path().join(format!("{function}.locked"));
        let log = self.dir.path().join(format!("{function}.lock.log"));
        // Each holder waits at most 10 s for the lock, then fails, so a wait here is bounded.
        let (mut command, script) = match self.postgres(function) {
            None => {
                let mut sqlite3 = Command::new("sqlite3");
                sqlite3
                    .args(["-bail", "-cmd", ".timeout 10000"])
                    .arg(self.store_path(&format!("{function}.db")));
                let script = format!("BEGIN EXCLUSIVE;\n.shell touch {}\n", held.display());
                (sqlite3, script)
            }
            Some(database) => {
                let tables = database.psql(
                    "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables \
                     WHERE schemaname = current_schema()",
                );
                let script = format!(
                    "SET lock_timeout = '10s';\nBEGIN;\n\
                     LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE;\n\\! touch {}\n",
                    held.display()
                );
                (database.psql_command(), script)
            }
        };
        let mut holder = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("create the lock log"))
            .spawn()
            .expect("run the lock holder (sqlite3 or psql; is it installed?)");
        let mut stdin = holder.stdin.take().expect("the holder's stdin");
        stdin
            .write_all(script.as_bytes())
            .expect("send the lock script");
        let taken = eventually(SETTLE, || held.exists().then_some(()));
        assert!(
            taken.is_some(),
            "{function}'s store was never locked: {}",
            read_log(&log)
        );
        StoreLock {
            holder,
            script: stdin,
            log,
        }
    }

    /// How many of the app's statements wait for a lock in `function`'s PostgreSQL database:
    /// there a statement blocked by [`Shop::lock_store`] waits rather than fails. Panics on
    /// SQLite, whose waits do not show.
    pub fn statements_waiting_for_locks(&self, function: &str) -> usize {
        let database = self
            .postgres(function)
            .unwrap_or_else(|| panic!("{function}'s SQLite store shows no lock waits"));
        let count = database.psql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        );
        count.parse().expect("a count")
    }

    /// The last lines of the host's output, for failure messages.
    pub fn logs_tail(&self) -> String {
        let logs = self.host.logs();
        let lines: Vec<&str> = logs.lines().collect();
        let start = lines.len().saturating_sub(60);
        format!("host output (tail):\n{}", lines[start..].join("\n"))
    }

    /// A request with a JSON body (or none when `body` is `Null`).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> HttpResponse {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.host.request(method, path, &all, &bytes)
    }

    /// A request carrying the admin bearer token.
    pub fn admin(&self, method: &str, path: &str, body: &Value) -> HttpResponse {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        self.send(method, path, &[("authorization", &bearer)], body)
    }

    /// GET `path` and its JSON body, asserting `expected` status.
    pub fn get_json(&self, path: &str, expected: u16) -> Value {
        let response = self.host.get(path);
        assert_eq!(response.status, expected, "GET {path}: {}", response.body);
        response.json()
    }

    /// Creates or updates a product with `available` units; remembers the stock for the checks.
    pub fn put_product(&self, sku: &str, price_cents: i64, available: i64) {
        let body = json!({"name": format!("Product {sku}"), "price_cents": price_cents, "available": available});
        let response = self.admin("PUT", &format!("/inventory/products/{sku}"), &body);
        assert!(
            response.status == 200 || response.status == 201,
            "PUT product {sku}: {} {}",
            response.status,
            response.body
        );
        self.seeded
            .lock()
            .unwrap()
            .insert(sku.to_string(), available);
    }

    /// The product as inventory reports it.
    pub fn product(&self, sku: &str) -> Value {
        self.get_json(&format!("/inventory/products/{sku}"), 200)
    }

    /// POST /orders with an optional idempotency key; the raw response.
    pub fn post_order(&self, body: &Value, key: Option<&str>) -> HttpResponse {
        match key {
            Some(key) => self.send("POST", "/orders", &[("idempotency-key", key)], body),
            None => self.send("POST", "/orders", &[], body),
        }
    }

    /// Places an order (asserting 201 and `pending`) and returns its id.
    pub fn place_order(&self, customer: &str, items: &[(&str, i64)], token: &str) -> String {
        let response = self.post_order(&order_body(customer, items, token), Some(&unique_key()));
        assert_eq!(response.status, 201, "POST /orders: {}", response.body);
        let order = response.json();
        assert_eq!(
            order["status"], "pending",
            "a new order is pending: {order}"
        );
        order["id"].as_str().expect("order id").to_string()
    }

    /// The token `POST /orders` gave for `order_id`, which proves its placer (derived from
    /// the shared secret as orders derives it).
    pub fn cancel_token(order_id: &str) -> String {
        let keys = shop_kit::seal::Keys::new(INTERNAL_KEY).expect("a key");
        keys.token(shop_kit::seal::Purpose::CancelToken, order_id)
    }

    /// `POST /orders/{id}/cancel` as the customer who placed the order.
    pub fn cancel(&self, order_id: &str) -> HttpResponse {
        let bearer = format!("Bearer {}", Self::cancel_token(order_id));
        let path = format!("/orders/{order_id}/cancel");
        self.send("POST", &path, &[("authorization", &bearer)], &Value::Null)
    }

    /// The order as the orders API reports it.
    pub fn order(&self, id: &str) -> Order {
        self.get_json(&format!("/orders/{id}"), 200)
    }

    /// Waits (bounded) until the order has left `pending` (the saga's first step is done) and
    /// returns it as it then stands.
    pub fn wait_past_pending(&self, id: &str) -> Order {
        eventually(SETTLE, || {
            let order = self.order(id);
            (order["status"] != "pending").then_some(order)
        })
        .unwrap_or_else(|| panic!("order {id} never left pending\n{}", self.logs_tail()))
    }

    /// Waits (bounded) until the order is confirmed or cancelled; panics with the logs otherwise.
    pub fn wait_final(&self, id: &str) -> Order {
        self.wait_final_all(&[id.to_string()]).remove(0)
    }

    /// Waits (bounded) until every order is final, relying on event delivery alone.
    pub fn wait_final_all(&self, ids: &[String]) -> Vec<Order> {
        self.settle(ids, false)
    }

    /// Waits (bounded) until every order is final, calling every function's catch-up sweep
    /// meanwhile, as the deployment's timer would (ADR 0001): recovery after injected faults.
    pub fn recover_all(&self, ids: &[String]) -> Vec<Order> {
        self.settle(ids, true)
    }

    fn settle(&self, ids: &[String], sweep: bool) -> Vec<Order> {
        let mut sweeper = Sweeper::new(self, sweep);
        let orders = eventually(SETTLE, || {
            sweeper.tick();
            let orders: Vec<Order> = ids.iter().map(|id| self.order(id)).collect();
            orders.iter().all(is_final).then_some(orders)
        });
        orders.unwrap_or_else(|| {
            let states: Vec<String> = ids
                .iter()
                .map(|id| format!("{id}: {}", self.order(id)["status"]))
                .collect();
            panic!(
                "orders not final within {SETTLE:?}:\n{}\n{}",
                states.join("\n"),
                self.logs_tail()
            )
        })
    }

    /// Calls `POST /<function>/sweep` on every consumer; tolerates failures (faults may be on).
    pub fn sweep_all(&self) {
        for function in FUNCTIONS {
            let _ = self.host.client().send(
                "POST",
                &self.host.url(&format!("/{function}/sweep")),
                &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
                &[],
            );
        }
    }

    /// Sets the payment simulator's faults (`{"down": true}`, `{"latency_ms": 2000}`, ...).
    pub fn set_faults(&self, faults: Value) {
        let response = self.admin("PUT", "/payment-sim/faults", &faults);
        assert_eq!(response.status, 200, "PUT faults: {}", response.body);
    }

    /// The billing payment of an order, `None` on 404.
    pub fn payment(&self, order_id: &str) -> Option<Value> {
        self.optional(&format!("/billing/payments/{order_id}"))
    }

    /// The provider's charge for an order (billing's idempotency key is the order id).
    pub fn provider_charge(&self, order_id: &str) -> Option<Value> {
        let path = format!("/payment-sim/charges/{order_id}");
        let response = self.provider("GET", &path, &Value::Null);
        match response.status {
            200 => Some(response.json()),
            404 => None,
            other => panic!("GET {path}: {other} {}", response.body),
        }
    }

    /// Calls payment-sim as billing does, with the shop's provider key.
    pub fn provider(&self, method: &str, path: &str, body: &Value) -> HttpResponse {
        let bearer = format!("Bearer {PROVIDER_KEY}");
        self.send(method, path, &[("authorization", &bearer)], body)
    }

    /// The notifications recorded for an order.
    pub fn notifications(&self, order_id: &str) -> Vec<Value> {
        let list = self.get_json(&format!("/notifications?order_id={order_id}"), 200);
        list["notifications"]
            .as_array()
            .unwrap_or_else(|| panic!("notification list without an array: {list}"))
            .clone()
    }

    /// `envelope` signed as a function of the shop signs it (`shop_kit::seal`): for tests that
    /// play a producer.
    pub fn sign(envelope: &Value) -> Value {
        let mut env: shop_kit::Envelope =
            serde_json::from_value(envelope.clone()).expect("an envelope");
        let keys = shop_kit::seal::Keys::new(INTERNAL_KEY).expect("a key");
        keys.sign(&mut env);
        serde_json::to_value(env).expect("an envelope serialises")
    }

    /// Every event in `function`'s feed, in outbox order (paged through `next_after`; read
    /// with the admin token).
    pub fn events(&self, function: &str) -> Vec<Value> {
        self.feed(function, "")
    }

    /// The copies `source` sent `consumer` in stream `partition`, in seq order: the envelopes
    /// that consumer receives.
    pub fn stream(&self, source: &str, consumer: &str, partition: i64) -> Vec<Value> {
        self.feed(
            source,
            &format!("consumer={consumer}&partition={partition}&"),
        )
    }

    /// The seq the next copy `source` sends `consumer` in stream `partition` will carry.
    pub fn next_seq(&self, source: &str, consumer: &str, partition: i64) -> i64 {
        self.stream(source, consumer, partition).len() as i64 + 1
    }

    /// A feed of `function` selected by `query` (empty, or `name=value&` pairs), every page.
    pub fn feed(&self, function: &str, query: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let path = format!("/{function}/events?{query}after={after}&limit=100");
            let response = self.admin("GET", &path, &Value::Null);
            assert_eq!(response.status, 200, "GET {path}: {}", response.body);
            let page = response.json();
            let batch = page["events"].as_array().cloned().unwrap_or_default();
            if batch.is_empty() {
                return events;
            }
            after = page["next_after"].as_i64().expect("next_after");
            events.extend(batch);
        }
    }

    fn optional(&self, path: &str) -> Option<Value> {
        let response = self.host.get(path);
        match response.status {
            200 => Some(response.json()),
            404 => None,
            other => panic!("GET {path}: {other} {}", response.body),
        }
    }

    /// Asserts every saga invariant for `ids` (all orders that touched their SKUs), waiting a
    /// bounded time for the asynchronous tail (compensations, notifications) to settle through
    /// event delivery alone.
    pub fn check_invariants(&self, ids: &[String]) {
        self.check(ids, false)
    }

    /// As [`check_invariants`](Self::check_invariants) after injected faults, calling the
    /// sweeps meanwhile as [`recover_all`](Self::recover_all) does. An order can be final while
    /// the event that tells notifications waits for the sweep by design (ADR 0001): committed
    /// after the sweep that finalised its order, behind the lease of a relay the host's kill
    /// left behind.
    pub fn check_recovered(&self, ids: &[String]) {
        self.check(ids, true)
    }

    fn check(&self, ids: &[String], sweep: bool) {
        let mut sweeper = Sweeper::new(self, sweep);
        let mut violations = Vec::new();
        let clean = eventually(SETTLE, || {
            sweeper.tick();
            violations = self.violations(ids);
            violations.is_empty().then_some(())
        });
        assert!(
            clean.is_some(),
            "saga invariants violated for {} orders:\n  {}\n{}",
            ids.len(),
            violations.join("\n  "),
            self.logs_tail()
        );
    }

    /// Every broken invariant, as text; empty when all hold.
    pub fn violations(&self, ids: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let mut sold: BTreeMap<String, i64> = BTreeMap::new();
        for id in ids {
            let order = self.order(id);
            match order["status"].as_str() {
                Some("confirmed") => {
                    for item in order["items"].as_array().into_iter().flatten() {
                        let sku = item["sku"].as_str().unwrap_or_default().to_string();
                        *sold.entry(sku).or_default() += item["quantity"].as_i64().unwrap_or(0);
                    }
                    self.check_confirmed(&order, &mut out);
                }
                Some("cancelled") => self.check_cancelled(&order, &mut out),
                other => out.push(format!("{id}: status {other:?}, not final")),
            }
            self.check_notifications(&order, &mut out);
        }
        let touched = skus(self, ids);
        let seeded = self.seeded.lock().unwrap().clone();
        for sku in touched {
            let product = self.product(&sku);
            let available = product["available"].as_i64().unwrap_or(-1);
            let reserved = product["reserved"].as_i64().unwrap_or(-1);
            if available < 0 || reserved < 0 {
                out.push(format!("{sku}: negative or missing stock: {product}"));
            }
            if reserved != 0 {
                out.push(format!(
                    "{sku}: {reserved} units still reserved with every order final"
                ));
            }
            if let Some(initial) = seeded.get(&sku) {
                let expected = initial - sold.get(&sku).copied().unwrap_or(0);
                if available != expected {
                    out.push(format!(
                        "{sku}: available {available}, expected {expected} (seeded {initial} minus confirmed units)"
                    ));
                }
            }
        }
        out
    }

    fn check_confirmed(&self, order: &Value, out: &mut Vec<String>) {
        let id = order["id"].as_str().unwrap_or_default();
        let total = order["total_cents"].as_i64();
        let lines: Option<i64> = order["items"].as_array().and_then(|items| {
            items
                .iter()
                .map(|item| Some(item["quantity"].as_i64()? * item["unit_price_cents"].as_i64()?))
                .sum()
        });
        if total.is_none() || total != lines {
            out.push(format!(
                "{id}: total {total:?} is not the sum of its priced lines {lines:?}"
            ));
        }
        match self.payment(id) {
            Some(payment)
                if payment["status"] == "captured" && payment["amount_cents"].as_i64() == total =>
            {
                match self.provider_charge(id) {
                    Some(charge)
                        if charge["status"] == "captured"
                            && charge["amount_cents"] == payment["amount_cents"]
                            && charge["provider_ref"] == payment["provider_ref"] => {}
                    other => out.push(format!(
                        "{id}: confirmed, billing says {payment} but the provider has {other:?}"
                    )),
                }
            }
            other => out.push(format!(
                "{id}: confirmed with total {total:?} but payment is {other:?}"
            )),
        }
    }

    fn check_cancelled(&self, order: &Value, out: &mut Vec<String>) {
        let id = order["id"].as_str().unwrap_or_default();
        if order["cancel_reason"].as_str().is_none_or(str::is_empty) {
            out.push(format!("{id}: cancelled without a reason"));
        }
        if let Some(payment) = self.payment(id) {
            if !matches!(payment["status"].as_str(), Some("declined" | "refunded")) {
                out.push(format!("{id}: cancelled but its payment is {payment}"));
            }
        }
        if let Some(charge) = self.provider_charge(id) {
            if charge["status"] == "captured" {
                out.push(format!(
                    "{id}: cancelled but the provider still holds a capture: {charge}"
                ));
            }
        }
    }

    fn check_notifications(&self, order: &Value, out: &mut Vec<String>) {
        let id = order["id"].as_str().unwrap_or_default();
        let kind = match order["status"].as_str() {
            Some("confirmed") => "order_confirmed",
            Some("cancelled") => "order_cancelled",
            _ => return,
        };
        let notes = self.notifications(id);
        let matching = notes.iter().filter(|n| n["kind"] == kind).count();
        if matching != 1 || notes.len() != 1 {
            out.push(format!(
                "{id}: expected exactly one {kind} notification, got {notes:?}"
            ));
        } else if notes[0]["customer_id"] != order["customer_id"] {
            out.push(format!(
                "{id}: notification for another customer: {}",
                notes[0]
            ));
        }
    }
}

/// A poison [`Shop::poison_inserts`] put in a store, until [`Shop::cure`] lifts it.
#[must_use = "the poison stays until Shop::cure lifts it"]
pub struct Poison {
    function: String,
    table: String,
}

/// Calls every function's sweep at most once a second while a test waits, as the deployment's
/// timer would; does nothing when the wait relies on event delivery alone.
struct Sweeper<'a> {
    shop: Option<&'a Shop>,
    last: Option<Instant>,
}

impl<'a> Sweeper<'a> {
    fn new(shop: &'a Shop, sweep: bool) -> Self {
        Self {
            shop: sweep.then_some(shop),
            last: None,
        }
    }

    fn tick(&mut self) {
        let Some(shop) = self.shop else { return };
        if self
            .last
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            shop.sweep_all();
            self.last = Some(Instant::now());
        }
    }
}

/// Whether an order reached a final state.
/// Now, in milliseconds since the epoch, as the functions count a lease's expiry (the host
/// runs on this machine's clock). Computed here, so the lease statements are the same SQL on
/// SQLite and PostgreSQL.
pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis()
}

pub fn is_final(order: &Order) -> bool {
    matches!(order["status"].as_str(), Some("confirmed" | "cancelled"))
}

/// The JSON body of `POST /orders`.
pub fn order_body(customer: &str, items: &[(&str, i64)], token: &str) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect();
    json!({"customer_id": customer, "items": items, "payment_token": token})
}

/// A key or SKU suffix no other test (or run) uses.
pub fn unique_key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "k{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh SKU named after `prefix`.
pub fn unique_sku(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_SKU.fetch_add(1, Ordering::Relaxed))
}

static NEXT_SKU: AtomicU64 = AtomicU64::new(1);

/// Asserts the one error shape with `code` and `status`.
pub fn assert_error(response: &HttpResponse, status: u16, code: &str) -> Value {
    assert_eq!(
        response.status, status,
        "expected {status} {code}: {}",
        response.body
    );
    let body = response.json();
    let error = &body["error"];
    assert_eq!(error["code"], code, "error code in {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
    assert!(
        error["service"].is_string(),
        "error without its service: {body}"
    );
    // Sent whole, its length declared (`shop_kit::reply`, and the host's own answers).
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str()),
        "length of {body}"
    );
    body
}

/// Every SKU the orders name.
fn skus(shop: &Shop, ids: &[String]) -> Vec<String> {
    let mut all: Vec<String> = ids
        .iter()
        .flat_map(|id| {
            shop.order(id)["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|item| item["sku"].as_str().map(str::to_string))
        })
        .collect();
    all.sort();
    all.dedup();
    all
}

/// One fresh database per SQL function, all on one server.
fn postgres_databases() -> BTreeMap<&'static str, PostgresServer> {
    let first = PostgresServer::start();
    let others: Vec<PostgresServer> = SQL_FUNCTIONS[1..]
        .iter()
        .map(|_| first.another_database())
        .collect();
    SQL_FUNCTIONS
        .into_iter()
        .zip(std::iter::once(first).chain(others))
        .collect()
}

/// `options` with the app variables that put each SQL function's store in its PostgreSQL
/// database (none when `databases` is empty: SQLite). The connection strings are secrets, so
/// they go in the host's environment, off its command line, like the fixture's other secrets.
fn with_postgres(
    options: HostOptions,
    databases: &BTreeMap<&'static str, PostgresServer>,
) -> HostOptions {
    let Some(server) = databases.values().next() else {
        return options;
    };
    let options = options.variable("sql_store", "postgres").variable(
        "postgres_origin",
        &format!("postgres://127.0.0.1:{}", server.port()),
    );
    databases
        .iter()
        .fold(options, |options, (function, database)| {
            let name = format!("SPIN_VARIABLE_{}_POSTGRES_URL", function.to_uppercase());
            options.process_env(&name, &database.connection_string())
        })
}

/// What a lock holder wrote to stderr, for failure messages.
fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

/// The host's state directory, shared by every test: with stores and logs placed in the test's
/// own directory by the runtime config, it holds only Wasmtime's code cache, so the components
/// are compiled once per build instead of once per test.
fn shared_state_dir() -> PathBuf {
    workspace_root().join("target/shop-e2e-state")
}

/// Subscriptions per channel of `manifest`'s Redis triggers: one per distinct address, as Spin
/// subscribes (docs/adr/0001, decision 15), so that a start waits for every consumer.
fn subscriptions(manifest: &Path) -> BTreeMap<String, usize> {
    let manifest = spin_host_config::manifest::Manifest::load(manifest).expect("load the manifest");
    let default = manifest
        .application
        .trigger
        .redis
        .map(|redis| redis.address);
    let mut addresses: BTreeMap<String, BTreeSet<Option<String>>> = BTreeMap::new();
    for trigger in manifest.triggers.redis {
        let address = trigger.address.or_else(|| default.clone());
        addresses
            .entry(trigger.channel)
            .or_default()
            .insert(address);
    }
    addresses
        .into_iter()
        .map(|(channel, addresses)| (channel, addresses.len()))
        .collect()
}

/// Copies the repository's runtime config with every store path made absolute under `dir`, so
/// the test never touches the working tree's `.spin/`.
fn write_runtime_config(dir: &Path) -> PathBuf {
    let source = workspace_root().join("runtime-config.toml");
    let text = fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    let stores = dir.join("stores");
    fs::create_dir_all(&stores).expect("create stores dir");
    let rewritten: Vec<String> = text
        .lines()
        .map(|line| match line.trim_start().strip_prefix("path") {
            Some(rest) if rest.trim_start().starts_with('=') => {
                let value = rest.trim_start()[1..].trim().trim_matches('"');
                let name = Path::new(value)
                    .file_name()
                    .unwrap_or_else(|| panic!("store path without a file name: {line}"));
                format!("path = {:?}", stores.join(name).display().to_string())
            }
            _ => line.to_string(),
        })
        .collect();
    // The shared state directory keeps only the code cache: logs and the default stores stay
    // with the test.
    let mut header = vec![
        format!("log_dir = {:?}", dir.join("logs").display().to_string()),
        String::new(),
    ];
    for (table, file) in [
        ("key_value_store", "default.db"),
        ("sqlite_database", "default_sqlite.db"),
    ] {
        header.push(format!("[{table}.default]"));
        header.push("type = \"spin\"".to_string());
        header.push(format!(
            "path = {:?}",
            stores.join(file).display().to_string()
        ));
        header.push(String::new());
    }
    let path = dir.join("runtime-config.toml");
    let text = [header.join("\n"), rewritten.join("\n")].join("\n");
    fs::write(&path, text).expect("write runtime config");
    path
}

/// Everything the public API shows of the stores: products, orders, provider faults, the
/// notifications of `customer` and every function's event feed. Equal snapshots before and
/// after a batch of refused requests show that a bad request changed nothing.
pub fn public_state(shop: &Shop, customer: &str) -> Value {
    let feeds: serde_json::Map<String, Value> = FUNCTIONS
        .iter()
        .map(|function| (function.to_string(), Value::Array(shop.events(function))))
        .collect();
    json!({
        "products": shop.get_json("/inventory/products", 200),
        "orders": shop.admin("GET", "/orders?limit=100", &Value::Null).json(),
        "faults": shop.admin("GET", "/payment-sim/faults", &Value::Null).json(),
        "notifications": shop.get_json(&format!("/notifications?customer_id={customer}"), 200),
        "feeds": feeds,
    })
}
