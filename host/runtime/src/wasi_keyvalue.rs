//! `wasi:keyvalue@0.2.0-draft2` (`store`, `atomics`, `batch`) as Spin serves it
//! (`spin-factor-key-value`, `src/host.rs`, over `key-value-spin`'s SQLite store): on the stores,
//! grants and handle table of [`crate::key_value`], so a bucket is the same store as
//! `fermyon:spin/key-value`'s store of that label.
//!
//! - `store.open(identifier)`: the label, with the same rules as `fermyon:spin/key-value`
//!   (`access-denied` when not granted, then `no-such-store` when not defined).
//! - `list-keys`: every key at once and no cursor back; a cursor given is
//!   `other("list_keys: cursor not supported")`.
//! - `batch`: an empty list touches no store; `get-many` leaves out the keys that hold nothing
//!   (Spin's `IN` query), each key once; `set-many` is one transaction.
//! - `increment`: the counter is an `i64`'s 8 little-endian bytes (what `get` then reads); a
//!   key holding anything else traps the instance (Spin's store panics there).
//! - `cas`: `cas.new` reads the key's value (or its absence), `current` reads it again and
//!   makes that the value `swap` expects (as Spin's `current`), and `swap` writes only if the
//!   key still holds it, in one statement (see `SqliteStore::swap`); otherwise `cas-failed`
//!   with a new `cas` on the key's latest value, as Spin's. Spin's SQLite store expects nothing
//!   until `current` is called and then upserts an absent key unconditionally, so two
//!   claims of an absent key both succeed there; here exactly one does.
//! - Errors: SQLite failures are `other` with SQLite's message, as for `fermyon:spin/key-value`.

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::imports::wasi::keyvalue::{atomics, batch, store};
use crate::key_value::{Failure, KeyValueState, NotACounter, OpenStore, Refusal, SqliteStore};
use atomics::CasError;
use store::{Error, KeyResponse};

/// A compare-and-swap under way (the guest's `cas`): its key, and the value `swap` expects there.
pub struct Cas {
    store: Arc<SqliteStore>,
    key: String,
    expected: Option<Vec<u8>>,
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        Error::Other(failure.into())
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::AccessDenied => Error::AccessDenied,
            Refusal::NoSuchStore => Error::NoSuchStore,
        }
    }
}

/// Links `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` to the [`KeyValueState`] that `get`
/// finds in the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut KeyValueState,
) -> Result<()> {
    store::add_to_linker::<_, HasSelf<KeyValueState>>(linker, get)?;
    atomics::add_to_linker::<_, HasSelf<KeyValueState>>(linker, get)?;
    batch::add_to_linker::<_, HasSelf<KeyValueState>>(linker, get)?;
    Ok(())
}

impl KeyValueState {
    /// A new `cas` on `key`, expecting what the key holds now.
    async fn new_cas(
        &mut self,
        store: Arc<SqliteStore>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let expected = match store.get(key.clone()).await {
            Ok(value) => value,
            Err(failure) => return Ok(Err(failure.into())),
        };
        let cas = Cas {
            store,
            key,
            expected,
        };
        Ok(Ok(self.table.push(cas)?))
    }
}

impl store::Host for KeyValueState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        Ok(self.open_label(&identifier)?.map_err(Error::from))
    }
}

impl store::HostBucket for KeyValueState {
    async fn get(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.store(&bucket)?.get(key).await.map_err(Error::from))
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let store = self.store(&bucket)?;
        Ok(store.set(key, value).await.map_err(Error::from))
    }

    async fn delete(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.store(&bucket)?.delete(key).await.map_err(Error::from))
    }

    async fn exists(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.store(&bucket)?.exists(key).await.map_err(Error::from))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<OpenStore>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        if cursor.is_some() {
            let unsupported = "list_keys: cursor not supported".to_owned();
            return Ok(Err(Error::Other(unsupported)));
        }
        let keys = self.store(&bucket)?.keys().await;
        Ok(keys
            .map(|keys| KeyResponse { keys, cursor: None })
            .map_err(Error::from))
    }

    async fn drop(&mut self, bucket: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl batch::Host for KeyValueState {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, Error>> {
        let store = self.store(&bucket)?;
        batch(keys, async |keys| store.get_many(keys).await).await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let store = self.store(&bucket)?;
        batch(key_values, async |pairs| store.set_many(pairs).await).await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let store = self.store(&bucket)?;
        batch(keys, async |keys| store.delete_many(keys).await).await
    }
}

/// A batch operation, as Spin runs one: an empty list touches no store.
async fn batch<I, T: Default>(
    items: Vec<I>,
    op: impl AsyncFnOnce(Vec<I>) -> Result<T, Failure>,
) -> wasmtime::Result<Result<T, Error>> {
    if items.is_empty() {
        return Ok(Ok(T::default()));
    }
    Ok(op(items).await.map_err(Error::from))
}

impl atomics::HostCas for KeyValueState {
    async fn new(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let store = self.store(&bucket)?;
        self.new_cas(store, key).await
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (store, key) = {
            let cas = self.table.get(&cas)?;
            (cas.store.clone(), cas.key.clone())
        };
        let current = match store.get(key).await {
            Ok(current) => current,
            Err(failure) => return Ok(Err(failure.into())),
        };
        self.table.get_mut(&cas)?.expected = current.clone();
        Ok(Ok(current))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueState {
    async fn increment(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let store = self.store(&bucket)?;
        match store.increment(key.clone(), delta).await {
            Ok(Ok(sum)) => Ok(Ok(sum)),
            Ok(Err(NotACounter(len))) => wasmtime::bail!(
                "wasi:keyvalue/atomics#increment: key `{key}` holds {len} bytes, not a counter (8)"
            ),
            Err(failure) => Ok(Err(failure.into())),
        }
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let Cas {
            store,
            key,
            expected,
        } = self.table.delete(cas)?;
        match store.swap(key.clone(), expected, value).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => Ok(Err(match self.new_cas(store, key).await? {
                Ok(latest) => CasError::CasFailed(latest),
                Err(error) => CasError::StoreError(error),
            })),
            Err(failure) => Ok(Err(CasError::StoreError(failure.into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use indexmap::IndexMap;
    use spin_host_config::runtime_config::StoreLocation;

    use super::*;
    use crate::key_value::KeyValueStores;
    use atomics::{Host as _, HostCas};
    use store::{Host as _, HostBucket as _};

    fn borrow<T: 'static>(handle: &Resource<T>) -> Resource<T> {
        Resource::new_borrow(handle.rep())
    }

    fn state() -> KeyValueState {
        let configured = IndexMap::from([("default".to_string(), StoreLocation::InMemory)]);
        let stores = Arc::new(KeyValueStores::open(&configured).unwrap());
        let granted = Arc::new(HashSet::from(["default".to_string(), "gone".into()]));
        KeyValueState::new(stores, granted)
    }

    #[tokio::test]
    async fn open_refuses_as_spin() {
        let mut state = state();
        let denied = state.open("other".into()).await.unwrap();
        assert!(matches!(denied, Err(Error::AccessDenied)));
        let unknown = state.open("gone".into()).await.unwrap();
        assert!(matches!(unknown, Err(Error::NoSuchStore)));
        assert!(state.open("default".into()).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_failed_swap_returns_a_cas_on_the_latest_value() {
        let mut state = state();
        let bucket = state.open("default".into()).await.unwrap().unwrap();
        let cas = HostCas::new(&mut state, borrow(&bucket), "k".into())
            .await
            .unwrap()
            .unwrap();
        state
            .set(borrow(&bucket), "k".into(), b"other".to_vec())
            .await
            .unwrap()
            .unwrap();
        let Err(CasError::CasFailed(latest)) = state.swap(cas, b"mine".to_vec()).await.unwrap()
        else {
            panic!("the key changed since cas.new: the swap must fail");
        };
        assert_eq!(
            state.table.get(&latest).unwrap().expected,
            Some(b"other".to_vec())
        );
        state.swap(latest, b"mine".to_vec()).await.unwrap().unwrap();
        let value = state.get(borrow(&bucket), "k".into()).await.unwrap();
        assert_eq!(value.unwrap(), Some(b"mine".to_vec()));
    }
}
