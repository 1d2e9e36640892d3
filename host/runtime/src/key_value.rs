//! `fermyon:spin/key-value@2.0.0` on SQLite, as Spin's default (`key-value-spin`) store: one file per
//! label (or memory), rows in `spin_key_value(store, key, value)`. Owns the
//! `[key_value_store.<label>]` stores of the runtime config and the per-component grant check:
//! a label not granted is `access-denied`, an unknown one `no-such-store`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use indexmap::IndexMap;
use rusqlite::{Connection, OptionalExtension};
use spin_host_config::runtime_config::StoreLocation;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::bindings::imports::fermyon::spin2_0_0::key_value::{self, Error};
use crate::state::InstanceState;

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

impl SqliteStore {
    fn open(name: &str, location: &StoreLocation) -> Result<Self> {
        let connection = match location {
            StoreLocation::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let connection = Connection::open(path)?;
                connection.busy_timeout(crate::sqlite::BUSY_TIMEOUT)?;
                crate::sqlite::enable_wal(&connection)?;
                crate::sqlite::relaxed_sync(&connection)?;
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
    /// connection, so within the host key-value operations never wait on each other.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        op: impl Fn(&Connection, &str) -> rusqlite::Result<T> + Send + Sync + 'static,
    ) -> Result<T, Error> {
        let poisoned = || Error::Other("key-value store lock poisoned".into());
        {
            let connection = self.connection.lock().map_err(|_| poisoned())?;
            match crate::sqlite::without_waiting(&connection, |c| op(c, &self.name)) {
                Err(e) if crate::sqlite::is_busy(&e) => {}
                done => return done.map_err(|e| Error::Other(e.to_string())),
            }
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let connection = store.connection.lock().map_err(|_| poisoned())?;
            op(&connection, &store.name).map_err(|e| Error::Other(e.to_string()))
        })
        .await
        .map_err(|e| Error::Other(e.to_string()))?
    }
}

/// An opened store handle (the guest's `store` resource).
pub struct OpenStore(Arc<SqliteStore>);

/// Per-instance state: which labels this component may open and its open handles.
pub struct KeyValueState {
    stores: Arc<KeyValueStores>,
    granted: Arc<HashSet<String>>,
    table: ResourceTable,
}

impl KeyValueState {
    pub fn new(stores: Arc<KeyValueStores>, granted: Arc<HashSet<String>>) -> Self {
        Self {
            stores,
            granted,
            table: ResourceTable::new(),
        }
    }

    fn store(&self, handle: &Resource<OpenStore>) -> Result<Arc<SqliteStore>, Error> {
        self.table
            .get(handle)
            .map(|open| open.0.clone())
            .map_err(|e| Error::Other(e.to_string()))
    }
}

pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    key_value::add_to_linker::<_, HasSelf<KeyValueState>>(linker, |state| &mut state.key_value)?;
    Ok(())
}

impl key_value::Host for KeyValueState {}

impl key_value::HostStore for KeyValueState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        if !self.granted.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(store) = self.stores.stores.get(&label).cloned() else {
            return Ok(Err(Error::NoSuchStore));
        };
        Ok(Ok(self.table.push(OpenStore(store))?))
    }

    async fn get(
        &mut self,
        handle: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let store = match self.store(&handle) {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store
            .with(move |c, name| {
                c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                    .query_row((name, &key), |row| row.get::<_, Vec<u8>>(0))
                    .optional()
            })
            .await)
    }

    async fn set(
        &mut self,
        handle: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let store = match self.store(&handle) {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store
            .with(move |c, name| {
                c.prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
                )?
                .execute((name, &key, &value))
                .map(drop)
            })
            .await)
    }

    async fn delete(
        &mut self,
        handle: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let store = match self.store(&handle) {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store
            .with(move |c, name| {
                c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                    .execute((name, &key))
                    .map(drop)
            })
            .await)
    }

    async fn exists(
        &mut self,
        handle: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let store = match self.store(&handle) {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store
            .with(move |c, name| {
                c.prepare_cached(
                    "SELECT EXISTS(SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2)",
                )?
                .query_row((name, &key), |row| row.get::<_, bool>(0))
            })
            .await)
    }

    async fn get_keys(
        &mut self,
        handle: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let store = match self.store(&handle) {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store
            .with(|c, name| {
                let mut statement =
                    c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?;
                let keys = statement.query_map([name], |row| row.get::<_, String>(0))?;
                keys.collect()
            })
            .await)
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
