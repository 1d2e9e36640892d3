//! Key-value adapter of the `ProviderStore` port (store label `payment_sim`).

use serde::{de::DeserializeOwned, Serialize};
use spin_sdk::key_value::Store;

use crate::domain::{Charge, Faults, Refund};
use crate::service::ProviderStore;

pub struct KvProvider {
    store: Store,
}

impl KvProvider {
    pub fn open() -> anyhow::Result<Self> {
        let store = Store::open("payment_sim")
            .map_err(|e| anyhow::anyhow!("opening key-value store payment_sim: {e:?}"))?;
        Ok(Self { store })
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        self.store.get_json(key)
    }

    fn set<T: Serialize>(&self, key: &str, value: &T) -> anyhow::Result<()> {
        self.store.set_json(key, value)
    }
}

impl ProviderStore for KvProvider {
    fn faults(&self) -> anyhow::Result<Faults> {
        Ok(self.get("faults")?.unwrap_or_default())
    }

    fn set_faults(&self, faults: &Faults) -> anyhow::Result<()> {
        self.set("faults", faults)
    }

    fn charge(&self, idempotency_key: &str) -> anyhow::Result<Option<Charge>> {
        self.get(&format!("charge:{idempotency_key}"))
    }

    fn charge_by_ref(&self, provider_ref: &str) -> anyhow::Result<Option<Charge>> {
        match self.get::<String>(&format!("ref:{provider_ref}"))? {
            Some(key) => self.charge(&key),
            None => Ok(None),
        }
    }

    fn put_charge(&self, charge: &Charge) -> anyhow::Result<()> {
        self.set(
            &format!("ref:{}", charge.provider_ref),
            &charge.idempotency_key,
        )?;
        self.set(&format!("charge:{}", charge.idempotency_key), charge)
    }

    fn refund(&self, idempotency_key: &str) -> anyhow::Result<Option<Refund>> {
        self.get(&format!("refund:{idempotency_key}"))
    }

    fn put_refund(&self, idempotency_key: &str, refund: &Refund) -> anyhow::Result<()> {
        self.set(&format!("refund:{idempotency_key}"), refund)
    }
}
