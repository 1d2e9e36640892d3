//! Provider use cases, written against the `ProviderStore` port.

use shop_kit::{ApiError, Failure};

use crate::domain::{refund, Charge, ChargeRequest, Faults, Refund, RefundRequest};

/// Where charges, refunds and faults live.
pub trait ProviderStore {
    fn faults(&self) -> anyhow::Result<Faults>;
    fn set_faults(&self, faults: &Faults) -> anyhow::Result<()>;
    fn charge(&self, idempotency_key: &str) -> anyhow::Result<Option<Charge>>;
    fn charge_by_ref(&self, provider_ref: &str) -> anyhow::Result<Option<Charge>>;
    fn put_charge(&self, charge: &Charge) -> anyhow::Result<()>;
    fn refund(&self, idempotency_key: &str) -> anyhow::Result<Option<Refund>>;
    fn put_refund(&self, idempotency_key: &str, refund: &Refund) -> anyhow::Result<()>;
}

pub struct Provider<S> {
    pub store: S,
}

/// A provider reference derived from the idempotency key: two concurrent first attempts with
/// the same key (the key-value store has no transactions) record the very same charge.
fn new_ref(prefix: &str, idempotency_key: &str) -> String {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, idempotency_key.as_bytes());
    format!("{prefix}_{}", id.simple())
}

impl<S: ProviderStore> Provider<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// Fails the call when the faults say so (`roll` is uniform in `[0, 1)`).
    pub fn check_faults(&self, faults: &Faults, roll: f64) -> Result<(), ApiError> {
        if faults.fails(roll) {
            Err(ApiError::unavailable(
                "payment provider unavailable (injected fault)",
            ))
        } else {
            Ok(())
        }
    }

    /// Charges once per idempotency key: a retry returns the first outcome.
    pub fn charge(&self, req: ChargeRequest) -> Result<(Charge, bool), Failure> {
        if let Some(existing) = self.store.charge(&req.idempotency_key)? {
            if !existing.same_request(&req) {
                return Err(ApiError::conflict(
                    "idempotency_key was already used with a different charge",
                )
                .into());
            }
            return Ok((existing, false));
        }
        let provider_ref = new_ref("ch", &req.idempotency_key);
        let charge = Charge::decide(req, provider_ref);
        self.store.put_charge(&charge)?;
        Ok((charge, true))
    }

    /// Refunds a captured charge once per idempotency key.
    pub fn refund(&self, req: RefundRequest) -> Result<Refund, Failure> {
        if let Some(existing) = self.store.refund(&req.idempotency_key)? {
            return Ok(existing);
        }
        let mut charge = self
            .store
            .charge_by_ref(&req.provider_ref)?
            .ok_or_else(|| ApiError::not_found(format!("charge {} not found", req.provider_ref)))?;
        let refund = refund(&mut charge, &req, new_ref("re", &req.idempotency_key))?;
        self.store.put_charge(&charge)?;
        self.store.put_refund(&req.idempotency_key, &refund)?;
        Ok(refund)
    }

    pub fn get_charge(&self, idempotency_key: &str) -> Result<Charge, Failure> {
        self.store.charge(idempotency_key)?.ok_or_else(|| {
            ApiError::not_found(format!("no charge for key {idempotency_key}")).into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChargeStatus;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem {
        faults: RefCell<Faults>,
        charges: RefCell<HashMap<String, Charge>>,
        refunds: RefCell<HashMap<String, Refund>>,
    }

    impl ProviderStore for Mem {
        fn faults(&self) -> anyhow::Result<Faults> {
            Ok(*self.faults.borrow())
        }
        fn set_faults(&self, faults: &Faults) -> anyhow::Result<()> {
            *self.faults.borrow_mut() = *faults;
            Ok(())
        }
        fn charge(&self, key: &str) -> anyhow::Result<Option<Charge>> {
            Ok(self.charges.borrow().get(key).cloned())
        }
        fn charge_by_ref(&self, provider_ref: &str) -> anyhow::Result<Option<Charge>> {
            Ok(self
                .charges
                .borrow()
                .values()
                .find(|c| c.provider_ref == provider_ref)
                .cloned())
        }
        fn put_charge(&self, charge: &Charge) -> anyhow::Result<()> {
            self.charges
                .borrow_mut()
                .insert(charge.idempotency_key.clone(), charge.clone());
            Ok(())
        }
        fn refund(&self, key: &str) -> anyhow::Result<Option<Refund>> {
            Ok(self.refunds.borrow().get(key).cloned())
        }
        fn put_refund(&self, key: &str, refund: &Refund) -> anyhow::Result<()> {
            self.refunds.borrow_mut().insert(key.into(), refund.clone());
            Ok(())
        }
    }

    fn req(key: &str, amount: i64) -> ChargeRequest {
        ChargeRequest {
            amount_cents: amount,
            currency: "USD".into(),
            token: "tok_visa".into(),
            idempotency_key: key.into(),
        }
    }

    #[test]
    fn the_same_key_never_charges_twice() {
        let p = Provider::new(Mem::default());
        let (first, new) = p.charge(req("o1", 500)).unwrap();
        assert!(new);
        let (again, new) = p.charge(req("o1", 500)).unwrap();
        assert!(!new);
        assert_eq!(first.provider_ref, again.provider_ref);
        assert_eq!(p.store.charges.borrow().len(), 1);
        assert!(matches!(p.charge(req("o1", 501)), Err(Failure::Api(e)) if e.code.status() == 409));
    }

    #[test]
    fn racing_first_attempts_record_the_same_charge() {
        let p = Provider::new(Mem::default());
        let (first, _) = p.charge(req("o1", 500)).unwrap();
        p.store.charges.borrow_mut().clear(); // as if both attempts had read before either wrote
        let (second, new) = p.charge(req("o1", 500)).unwrap();
        assert!(new);
        assert_eq!(first, second);
        assert_ne!(
            p.charge(req("o2", 500)).unwrap().0.provider_ref,
            first.provider_ref
        );
    }

    #[test]
    fn a_refund_is_idempotent_and_marks_the_charge() {
        let p = Provider::new(Mem::default());
        let (charge, _) = p.charge(req("o1", 500)).unwrap();
        let r = RefundRequest {
            provider_ref: charge.provider_ref.clone(),
            amount_cents: 500,
            idempotency_key: "refund-o1".into(),
        };
        let first = p.refund(r.clone()).unwrap();
        assert_eq!(p.refund(r).unwrap(), first);
        assert_eq!(p.get_charge("o1").unwrap().status, ChargeStatus::Refunded);
    }

    #[test]
    fn faults_turn_into_unavailable() {
        let p = Provider::new(Mem::default());
        let down = Faults {
            down: true,
            ..Faults::default()
        };
        assert_eq!(p.check_faults(&down, 0.5).unwrap_err().code.status(), 503);
        assert!(p.check_faults(&Faults::default(), 0.0).is_ok());
    }
}
