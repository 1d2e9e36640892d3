//! The key-value stores, on SQLite as Spin's default (`key-value-spin`) store: one file per label
//! (or memory), rows in `spin_key_value(store, key, value)`. Owns the `[key_value_store.<label>]`
//! stores of the runtime config, the per-component grant check (a label not granted is
//! `access-denied`, an unknown one `no-such-store`), every operation on a store, and
//! `fermyon:spin/key-value@2.0.0`. `wasi:keyvalue@0.2.0-draft2` (`store`, `atomics`, `batch`)
//! is served over the same stores, grants and handles by [`crate::wasi_keyvalue`]. Not
//! reproduced: Spin's 128 MiB cap on a result (`query result exceeds limit`), and store types
//! other than `spin`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use indexmap::IndexMap;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use spin_host_config::runtime_config::StoreLocation;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::bindings::imports::fermyon::spin2_0_0::key_value::{self, Error};

/// Every key-value store the app can open, by label (`default` included).
pub struct KeyValueStores {
    stores: HashMap<String, Arc<SqliteStore>>,
}

impl KeyValueStores {
    /// Opens the runtime config's `[key_value_store.<label>]` stores (all `type = "spin"`;
    /// label checks against the manifest are `RuntimeConfig::check_manifest_labels`).
    pub fn open(configured: &IndexMap<String, StoreLocation>) -> Result<Self> {
        let mut stores = HashMap::new();
        for (label, location) in configured {
            let store = SqliteStore::open(label, location)
                .with_context(|| format!("key-value store `{label}` ({location:?})"))?;
            stores.insert(label.clone(), Arc::new(store));
        }
        Ok(Self { stores })
    }
}

/// One label's SQLite file; a single connection shared by all instances (SQLite serialises writes).
/// Its statements are prepared once and kept in the connection's cache: parsed on every call,
/// they were a thirtieth of the host's CPU under the saga.
pub struct SqliteStore {
    name: String,
    connection: Mutex<Connection>,
}

/// A failed store operation: `other` with SQLite's message, in both interfaces.
pub(crate) struct Failure(String);

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        Error::Other(failure.0)
    }
}

impl From<Failure> for String {
    fn from(failure: Failure) -> Self {
        failure.0
    }
}

/// Why `increment` cannot count: the key holds a value that is not an `i64` as Spin stores one
/// (8 bytes, little-endian); its length.
pub(crate) struct NotACounter(pub usize);

const SELECT_VALUE: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";
const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
     ON CONFLICT(store, key) DO UPDATE SET value = excluded.value";

impl SqliteStore {
    fn open(name: &str, location: &StoreLocation) -> Result<Self> {
        let connection = match location {
            StoreLocation::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let connection = Connection::open(path)?;
                connection.busy_timeout(crate::sqlite::settings::BUSY_TIMEOUT)?;
                crate::sqlite::settings::enable_wal(&connection)?;
                crate::sqlite::settings::relaxed_sync(&connection)?;
                connection
            }
            StoreLocation::InMemory => Connection::open_in_memory()?,
        };
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            );",
        )?;
        Ok(Self {
            name: name.to_string(),
            connection: Mutex::new(connection),
        })
    }

    /// Runs `op` in place with the busy timeout off (a key-value operation is one short statement,
    /// cheaper than a hand-off to another thread), and on a blocking thread, waiting for the
    /// lock, only when another process holds the file: every instance shares this one
    /// connection, so within the host key-value operations never wait on each other, and an
    /// operation holding the connection's mutex is atomic among all of the host's instances.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        op: impl Fn(&Connection, &str) -> rusqlite::Result<T> + Send + Sync + 'static,
    ) -> Result<T, Failure> {
        let poisoned = || Failure("key-value store lock poisoned".into());
        let failed = |e: rusqlite::Error| Failure(e.to_string());
        {
            let connection = self.connection.lock().map_err(|_| poisoned())?;
            match crate::sqlite::settings::without_waiting(&connection, |c| op(c, &self.name)) {
                Err(e) if crate::sqlite::settings::is_busy(&e) => {}
                done => return done.map_err(failed),
            }
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let connection = store.connection.lock().map_err(|_| poisoned())?;
            op(&connection, &store.name).map_err(failed)
        })
        .await
        .map_err(|e| Failure(e.to_string()))?
    }

    /// Runs `op` in a transaction that takes the file's write lock at once (`BEGIN IMMEDIATE`),
    /// so that what `op` reads cannot change, in this or another process, before it commits.
    async fn in_transaction<T: Send + 'static>(
        self: &Arc<Self>,
        op: impl Fn(&Connection, &str) -> rusqlite::Result<T> + Send + Sync + 'static,
    ) -> Result<T, Failure> {
        self.with(move |c, name| {
            let transaction =
                rusqlite::Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
            let done = op(&transaction, name)?;
            transaction.commit()?;
            Ok(done)
        })
        .await
    }

    pub(crate) async fn get(self: &Arc<Self>, key: String) -> Result<Option<Vec<u8>>, Failure> {
        self.with(move |c, name| value_of(c, name, &key)).await
    }

    pub(crate) async fn set(self: &Arc<Self>, key: String, value: Vec<u8>) -> Result<(), Failure> {
        self.with(move |c, name| {
            c.prepare_cached(UPSERT)?
                .execute((name, &key, &value))
                .map(drop)
        })
        .await
    }

    pub(crate) async fn delete(self: &Arc<Self>, key: String) -> Result<(), Failure> {
        self.with(move |c, name| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute((name, &key))
                .map(drop)
        })
        .await
    }

    pub(crate) async fn exists(self: &Arc<Self>, key: String) -> Result<bool, Failure> {
        self.with(move |c, name| {
            c.prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2)",
            )?
            .query_row((name, &key), |row| row.get::<_, bool>(0))
        })
        .await
    }

    pub(crate) async fn keys(self: &Arc<Self>) -> Result<Vec<String>, Failure> {
        self.with(|c, name| {
            let mut statement =
                c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?;
            let keys = statement.query_map([name], |row| row.get::<_, String>(0))?;
            keys.collect()
        })
        .await
    }

    /// The keys among `keys` that hold a value, each once, with it, in no particular order: as
    /// Spin's `key IN rarray(...)` query, a missing key is left out (not paired with `none`).
    pub(crate) async fn get_many(
        self: &Arc<Self>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, Failure> {
        let keys = serde_json::Value::from(keys).to_string();
        self.with(move |c, name| {
            let mut statement = c.prepare_cached(
                "SELECT key, value FROM spin_key_value
                 WHERE store = ?1 AND key IN (SELECT value FROM json_each(?2))",
            )?;
            let rows = statement.query_map((name, &keys), |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Sets every pair in one transaction (a later pair for the same key wins), as Spin does.
    pub(crate) async fn set_many(
        self: &Arc<Self>,
        pairs: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Failure> {
        self.in_transaction(move |c, name| {
            let mut upsert = c.prepare_cached(UPSERT)?;
            for (key, value) in &pairs {
                upsert.execute((name, key, value))?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn delete_many(self: &Arc<Self>, keys: Vec<String>) -> Result<(), Failure> {
        let keys = serde_json::Value::from(keys).to_string();
        self.with(move |c, name| {
            c.prepare_cached(
                "DELETE FROM spin_key_value
                 WHERE store = ?1 AND key IN (SELECT value FROM json_each(?2))",
            )?
            .execute((name, &keys))
            .map(drop)
        })
        .await
    }

    /// Adds `delta` to the counter at `key` (0 when absent) and returns the sum, stored as Spin
    /// stores it: the `i64`'s 8 little-endian bytes, so `get` reads them. It wraps on overflow,
    /// as Spin's release build does. Read and write are one `BEGIN IMMEDIATE` transaction.
    pub(crate) async fn increment(
        self: &Arc<Self>,
        key: String,
        delta: i64,
    ) -> Result<Result<i64, NotACounter>, Failure> {
        self.in_transaction(move |c, name| {
            let current = match value_of(c, name, &key)? {
                None => 0,
                Some(bytes) => match <[u8; 8]>::try_from(bytes) {
                    Ok(bytes) => i64::from_le_bytes(bytes),
                    Err(bytes) => return Ok(Err(NotACounter(bytes.len()))),
                },
            };
            let sum = current.wrapping_add(delta);
            c.prepare_cached(UPSERT)?
                .execute((name, &key, sum.to_le_bytes()))?;
            Ok(Ok(sum))
        })
        .await
    }

    /// Writes `value` at `key` only if the key still holds `expected` (`None`: is still absent),
    /// in one statement whose changed-row count tells: `UPDATE ... WHERE value = expected`, as
    /// Spin's store, or `INSERT ... ON CONFLICT DO NOTHING` for an absent key (the insert that
    /// Spin's `Cas` contract asks for, where its SQLite store upserts). Whether it wrote.
    pub(crate) async fn swap(
        self: &Arc<Self>,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, Failure> {
        self.with(move |c, name| {
            let changed = match &expected {
                Some(expected) => c
                    .prepare_cached(
                        "UPDATE spin_key_value SET value = ?3
                         WHERE store = ?1 AND key = ?2 AND value = ?4",
                    )?
                    .execute((name, &key, &value, expected))?,
                None => c
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO NOTHING",
                    )?
                    .execute((name, &key, &value))?,
            };
            Ok(changed == 1)
        })
        .await
    }
}

fn value_of(c: &Connection, name: &str, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached(SELECT_VALUE)?
        .query_row((name, key), |row| row.get::<_, Vec<u8>>(0))
        .optional()
}

/// An opened store handle (the guest's `store` of `fermyon:spin/key-value` and `bucket` of
/// `wasi:keyvalue/store`).
pub struct OpenStore(Arc<SqliteStore>);

/// Why a label does not open, in Spin's order: not granted to the component (whether or not it
/// exists), then not defined.
pub(crate) enum Refusal {
    AccessDenied,
    NoSuchStore,
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::AccessDenied => Error::AccessDenied,
            Refusal::NoSuchStore => Error::NoSuchStore,
        }
    }
}

/// Per-instance state: which labels this component may open and its open handles (stores,
/// buckets and compare-and-swaps).
pub struct KeyValueState {
    stores: Arc<KeyValueStores>,
    granted: Arc<HashSet<String>>,
    pub(crate) table: ResourceTable,
}

impl KeyValueState {
    pub fn new(stores: Arc<KeyValueStores>, granted: Arc<HashSet<String>>) -> Self {
        Self {
            stores,
            granted,
            table: ResourceTable::new(),
        }
    }

    /// Opens `label` for this component, as Spin does for both interfaces.
    pub(crate) fn open_label(
        &mut self,
        label: &str,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Refusal>> {
        if !self.granted.contains(label) {
            return Ok(Err(Refusal::AccessDenied));
        }
        let Some(store) = self.stores.stores.get(label).cloned() else {
            return Ok(Err(Refusal::NoSuchStore));
        };
        Ok(Ok(self.table.push(OpenStore(store))?))
    }

    /// The store behind a handle. Wasmtime only passes handles this instance holds, so a miss
    /// is the host's bug: a trap, as Spin's "invalid store".
    pub(crate) fn store(&self, handle: &Resource<OpenStore>) -> wasmtime::Result<Arc<SqliteStore>> {
        Ok(self.table.get(handle)?.0.clone())
    }
}

/// Links `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue` to the [`KeyValueState`] that `get`
/// finds in the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut KeyValueState,
) -> Result<()> {
    key_value::add_to_linker::<_, HasSelf<KeyValueState>>(linker, get)?;
    crate::wasi_keyvalue::add_to_linker(linker, get)
}

impl key_value::Host for KeyValueState {}

impl key_value::HostStore for KeyValueState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        Ok(self.open_label(&label)?.map_err(Error::from))
    }

    async fn get(
        &mut self,
        handle: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.store(&handle)?.get(key).await.map_err(Error::from))
    }

    async fn set(
        &mut self,
        handle: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self
            .store(&handle)?
            .set(key, value)
            .await
            .map_err(Error::from))
    }

    async fn delete(
        &mut self,
        handle: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.store(&handle)?.delete(key).await.map_err(Error::from))
    }

    async fn exists(
        &mut self,
        handle: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.store(&handle)?.exists(key).await.map_err(Error::from))
    }

    async fn get_keys(
        &mut self,
        handle: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        Ok(self.store(&handle)?.keys().await.map_err(Error::from))
    }

    async fn drop(&mut self, handle: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn borrow(handle: &Resource<OpenStore>) -> Resource<OpenStore> {
        Resource::new_borrow(handle.rep())
    }

    #[tokio::test]
    async fn values_round_trip_and_grants_are_enforced() {
        let configured = IndexMap::from([("default".to_string(), StoreLocation::InMemory)]);
        let stores = Arc::new(KeyValueStores::open(&configured).unwrap());
        let granted = Arc::new(HashSet::from(["default".to_string(), "gone".into()]));
        let mut state = KeyValueState::new(stores, granted);
        use key_value::HostStore;

        let denied = state.open("other".into()).await.unwrap();
        assert!(matches!(denied, Err(Error::AccessDenied)));
        let unknown = state.open("gone".into()).await.unwrap();
        assert!(matches!(unknown, Err(Error::NoSuchStore)));
        let store = state.open("default".into()).await.unwrap().unwrap();
        let set = state.set(borrow(&store), "k".into(), b"v".to_vec()).await;
        set.unwrap().unwrap();
        let value = state.get(borrow(&store), "k".into()).await.unwrap();
        assert_eq!(value.unwrap(), Some(b"v".to_vec()));
        assert!(state
            .exists(borrow(&store), "k".into())
            .await
            .unwrap()
            .unwrap());
        let keys = state.get_keys(borrow(&store)).await.unwrap().unwrap();
        assert_eq!(keys, vec!["k".to_string()]);
        state
            .delete(borrow(&store), "k".into())
            .await
            .unwrap()
            .unwrap();
        assert!(!state
            .exists(borrow(&store), "k".into())
            .await
            .unwrap()
            .unwrap());
    }
}
