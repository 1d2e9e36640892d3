//! Provider use cases, written against the `ProviderStore` port.

use shop_kit::{ApiError, Failure};

use crate::domain::{
    admit, refund, Admission, Charge, ChargeRequest, ChargeStatus, Faults, Refund, RefundRequest,
};

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

    /// Starts a charge, once per idempotency key: a new one is recorded `processing` (so that a
    /// lookup during the latency sees it) and returned with `true`, to be settled once the
    /// latency is over; a retry of a settled charge returns it with `false`.
    pub fn begin_charge(
        &self,
        req: ChargeRequest,
        latency_ms: u64,
        now_ms: i64,
    ) -> Result<(Charge, bool), Failure> {
        let existing = self.store.charge(&req.idempotency_key)?;
        if let Admission::Replay(charge) = admit(existing, &req, now_ms)? {
            return Ok((charge, false));
        }
        let provider_ref = new_ref("ch", &req.idempotency_key);
        let charge = Charge::receive(req, provider_ref, now_ms, latency_ms);
        self.store.put_charge(&charge)?;
        Ok((charge, true))
    }

    /// Settles a charge [`Provider::begin_charge`] started. Reads it again first, so that a
    /// charge settled and refunded meanwhile is answered as it stands, not overwritten.
    pub fn settle_charge(&self, mut charge: Charge) -> Result<Charge, Failure> {
        if let Some(stored) = self.store.charge(&charge.idempotency_key)? {
            if stored.status != ChargeStatus::Processing {
                return Ok(stored);
            }
        }
        charge.settle();
        self.store.put_charge(&charge)?;
        Ok(charge)
    }

    /// Refunds part or all of a captured charge, once per idempotency key: a retry with the
    /// same request answers the first refund again; another request under the key conflicts.
    pub fn refund(&self, req: RefundRequest, now_ms: i64) -> Result<Refund, Failure> {
        if let Some(existing) = self.store.refund(&req.idempotency_key)? {
            if !existing.same_request(&req) {
                return Err(ApiError::conflict(
                    "idempotency_key was already used with a different refund",
                )
                .into());
            }
            return Ok(existing);
        }
        let mut charge = self
            .store
            .charge_by_ref(&req.provider_ref)?
            .filter(|c| !c.abandoned(now_ms))
            .ok_or_else(|| ApiError::not_found(format!("charge {} not found", req.provider_ref)))?;
        let refund = refund(&mut charge, &req, new_ref("re", &req.idempotency_key))?;
        self.store.put_charge(&charge)?;
        self.store.put_refund(&req.idempotency_key, &refund)?;
        Ok(refund)
    }

    /// The charge made under an idempotency key, `processing` while its latency runs; not
    /// found when none was received, or when the one received was abandoned.
    pub fn get_charge(&self, idempotency_key: &str, now_ms: i64) -> Result<Charge, Failure> {
        self.store
            .charge(idempotency_key)?
            .filter(|c| !c.abandoned(now_ms))
            .ok_or_else(|| {
                ApiError::not_found(format!("no charge for key {idempotency_key}")).into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ABANDONED_AFTER_MS, DECLINE_TOKEN};
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

    /// A whole charge call without latency: begun, then settled when new.
    fn charge(p: &Provider<Mem>, req: ChargeRequest) -> Result<(Charge, bool), Failure> {
        let (charge, new) = p.begin_charge(req, 0, 0)?;
        Ok((
            if new {
                p.settle_charge(charge)?
            } else {
                charge
            },
            new,
        ))
    }

    fn status_of(result: Result<impl std::fmt::Debug, Failure>) -> u16 {
        match result {
            Err(Failure::Api(e)) => e.code.status(),
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[test]
    fn the_same_key_never_charges_twice() {
        let p = Provider::new(Mem::default());
        let (first, new) = charge(&p, req("o1", 500)).unwrap();
        assert!(new);
        let (again, new) = charge(&p, req("o1", 500)).unwrap();
        assert!(!new);
        assert_eq!(first.provider_ref, again.provider_ref);
        assert_eq!(p.store.charges.borrow().len(), 1);
    }

    #[test]
    fn a_key_reused_for_another_charge_conflicts_and_charges_nothing() {
        let p = Provider::new(Mem::default());
        let (first, _) = charge(&p, req("o1", 500)).unwrap();
        assert_eq!(status_of(charge(&p, req("o1", 501))), 409);
        let mut token = req("o1", 500);
        token.token = "tok_other".into();
        assert_eq!(status_of(charge(&p, token)), 409);
        assert_eq!(p.get_charge("o1", 0).unwrap(), first);
        assert_eq!(p.store.charges.borrow().len(), 1);
    }

    #[test]
    fn a_charge_is_processing_during_its_latency_then_captured() {
        let p = Provider::new(Mem::default());
        let (started, new) = p.begin_charge(req("o1", 500), 2_000, 10_000).unwrap();
        assert!(new);
        let seen = p.get_charge("o1", 10_500).unwrap();
        assert_eq!(seen.status, ChargeStatus::Processing);
        assert_eq!(seen.view().status, ChargeStatus::Processing);
        // A concurrent retry neither waits nor charges again.
        let busy = p.begin_charge(req("o1", 500), 2_000, 10_600);
        assert_eq!(status_of(busy), 409);
        let settled = p.settle_charge(started).unwrap();
        assert_eq!(settled.status, ChargeStatus::Captured);
        assert_eq!(p.get_charge("o1", 12_000).unwrap(), settled);
        let (replay, new) = p.begin_charge(req("o1", 500), 2_000, 12_000).unwrap();
        assert!(!new);
        assert_eq!(replay, settled);
    }

    #[test]
    fn a_declined_charge_is_looked_up_by_its_key() {
        let p = Provider::new(Mem::default());
        let mut declined = req("o1", 500);
        declined.token = DECLINE_TOKEN.into();
        charge(&p, declined).unwrap();
        assert_eq!(
            p.get_charge("o1", 0).unwrap().status,
            ChargeStatus::Declined
        );
        assert_eq!(status_of(p.get_charge("o2", 0)), 404);
    }

    #[test]
    fn a_charge_abandoned_while_processing_is_charged_afresh() {
        let p = Provider::new(Mem::default());
        p.begin_charge(req("o1", 500), 1_000, 0).unwrap();
        let later = 1_001 + ABANDONED_AFTER_MS;
        assert_eq!(status_of(p.get_charge("o1", later)), 404);
        let (again, new) = p.begin_charge(req("o1", 500), 0, later).unwrap();
        assert!(new);
        assert_eq!(
            p.settle_charge(again).unwrap().status,
            ChargeStatus::Captured
        );
    }

    #[test]
    fn settling_late_keeps_a_refund_made_meanwhile() {
        let p = Provider::new(Mem::default());
        let (started, _) = p.begin_charge(req("o1", 500), 0, 0).unwrap();
        let mut settled = started.clone();
        settled.settle();
        settled.status = ChargeStatus::Refunded;
        p.store.put_charge(&settled).unwrap();
        assert_eq!(
            p.settle_charge(started).unwrap().status,
            ChargeStatus::Refunded
        );
    }

    #[test]
    fn racing_first_attempts_record_the_same_charge() {
        let p = Provider::new(Mem::default());
        let (first, _) = charge(&p, req("o1", 500)).unwrap();
        p.store.charges.borrow_mut().clear(); // as if both attempts had read before either wrote
        let (second, new) = charge(&p, req("o1", 500)).unwrap();
        assert!(new);
        assert_eq!(first, second);
        assert_ne!(
            charge(&p, req("o2", 500)).unwrap().0.provider_ref,
            first.provider_ref
        );
    }

    #[test]
    fn a_refund_is_idempotent_and_marks_the_charge() {
        let p = Provider::new(Mem::default());
        let (charge, _) = charge(&p, req("o1", 500)).unwrap();
        let r = RefundRequest {
            provider_ref: charge.provider_ref.clone(),
            amount_cents: 500,
            idempotency_key: "refund-o1".into(),
        };
        let first = p.refund(r.clone(), 0).unwrap();
        assert_eq!(p.refund(r.clone(), 0).unwrap(), first);
        let other = RefundRequest {
            amount_cents: 1,
            ..r
        };
        assert_eq!(status_of(p.refund(other, 0)), 409);
        assert_eq!(
            p.get_charge("o1", 0).unwrap().status,
            ChargeStatus::Refunded
        );
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
