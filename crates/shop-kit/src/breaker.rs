//! A circuit breaker for synchronous outbound calls (payment provider, webhook). Instances
//! live for one request, so its state is a small value the caller keeps in its key-value
//! store between calls: closed (calls flow), open (calls refused until a deadline) and
//! half-open (one trial call decides). [`list_route`] answers `GET /<fn>/breakers` with the
//! stored state of a function's breakers.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use spin_sdk::http::{Request, Response};

use crate::web::Ctx;
use crate::Failure;

/// Thresholds, from the `breaker_failure_threshold` and `breaker_open_ms` variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    /// How long it stays open before a trial call.
    pub open_ms: i64,
}

impl Policy {
    /// Reads the policy from the component's variables.
    pub fn from_variables() -> Self {
        Policy {
            threshold: crate::config::num_or("breaker_failure_threshold", 5u32).max(1),
            open_ms: crate::config::num_or("breaker_open_ms", 30_000i64).max(0),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// As stored and logged.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// The stored state of one breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Breaker {
    pub state: State,
    pub consecutive_failures: u32,
    /// Open: when a trial may go. Half-open: when the granted trial counts as lost.
    pub until_ms: i64,
}

impl Breaker {
    /// Whether a call may go now. Past the open deadline one trial is granted (half-open);
    /// a trial that never reports back is given up on after `open_ms` and another is granted.
    pub fn acquire(&mut self, now_ms: i64, policy: Policy) -> bool {
        match self.state {
            State::Closed => true,
            State::Open | State::HalfOpen if now_ms >= self.until_ms => {
                self.state = State::HalfOpen;
                self.until_ms = now_ms + policy.open_ms;
                true
            }
            State::Open | State::HalfOpen => false,
        }
    }

    /// Records the outcome of a call that [`Breaker::acquire`] allowed.
    pub fn record(&mut self, success: bool, now_ms: i64, policy: Policy) {
        if success {
            *self = Breaker::default();
            return;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.state == State::HalfOpen || self.consecutive_failures >= policy.threshold {
            self.state = State::Open;
            self.until_ms = now_ms + policy.open_ms;
        }
    }
}

/// What `GET /<fn>/breakers` answers for the named breakers, as stored (a breaker never used
/// reads as closed with no failures): `{"breakers": [{"name", "state", "consecutive_failures",
/// "until_ms"}]}`.
pub fn report(breakers: &[(&str, Breaker)]) -> Value {
    let breakers: Vec<Value> = breakers
        .iter()
        .map(|(name, b)| {
            json!({
                "name": name,
                "state": b.state.name(),
                "consecutive_failures": b.consecutive_failures,
                "until_ms": b.until_ms,
            })
        })
        .collect();
    json!({ "breakers": breakers })
}

/// `GET /<fn>/breakers` (admin): the [`report`] of the breakers `read` returns, read only once
/// the token is checked.
pub fn list_route(
    ctx: &Ctx,
    req: &Request,
    read: impl FnOnce() -> anyhow::Result<Vec<(&'static str, Breaker)>>,
) -> Result<Response, Failure> {
    ctx.require_admin(req)?;
    Ok(crate::web::json(200, &report(&read()?)))
}

/// Delay before retry number `attempt` (0-based): exponential from `base_ms`, capped at
/// `cap_ms`, with full jitter from `random` so that callers retrying together spread out.
pub fn backoff_ms(attempt: u32, base_ms: u64, cap_ms: u64, random: u64) -> u64 {
    let ceiling = base_ms.saturating_mul(1u64 << attempt.min(32)).min(cap_ms);
    random % (ceiling + 1)
}

/// Calls allowed per guarded operation, and the backoff between them.
const ATTEMPTS: u32 = 3;
const BACKOFF_BASE_MS: u64 = 100;
const BACKOFF_CAP_MS: u64 = 1_000;

/// A breaker whose state lives under `key` in a Spin key-value store, shared by every
/// instance of the component.
pub struct KvBreaker {
    store: spin_sdk::key_value::Store,
    key: String,
    policy: Policy,
}

impl KvBreaker {
    /// The breaker `key` in the store granted under `label`, with the policy from variables.
    pub fn open(label: &str, key: &str) -> anyhow::Result<Self> {
        let store = spin_sdk::key_value::Store::open(label)
            .map_err(|e| anyhow::anyhow!("opening key-value store {label}: {e}"))?;
        Ok(KvBreaker {
            store,
            key: key.to_string(),
            policy: Policy::from_variables(),
        })
    }

    /// The stored state, as the last call left it (closed when never used or unreadable).
    pub fn snapshot(&self) -> Breaker {
        self.load()
    }

    fn load(&self) -> Breaker {
        // An unreadable state is treated as closed: the breaker protects, it must not block.
        self.stored().unwrap_or_default()
    }

    /// The stored state, if there is a readable one.
    fn stored(&self) -> Option<Breaker> {
        self.store
            .get(&self.key)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }

    /// Stores `breaker` unless `stored` (what was read before the change) is the same: a
    /// closed breaker's calls that succeed change nothing, and so write nothing.
    fn save(&self, breaker: &Breaker, stored: Option<Breaker>) {
        if stored == Some(*breaker) {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(breaker) {
            let _ = self.store.set(&self.key, &bytes);
        }
    }

    /// Logs a change of state as a well-known event (the host counts them per breaker).
    fn log_transition(&self, from: State, to: State) {
        if from == to {
            return;
        }
        let level = if to == State::Open { "warn" } else { "info" };
        let trace = crate::TraceContext::from_header(None);
        crate::log::Logger::shared(&trace).event(
            level,
            crate::log::events::BREAKER_TRANSITION,
            &format!("circuit {} {} -> {}", self.key, from.name(), to.name()),
            None,
            serde_json::json!({"breaker": self.key, "from": from.name(), "to": to.name()}),
        );
    }

    /// Runs `call` through the breaker, retrying failures a bounded number of times with
    /// jittered exponential backoff. Refused at once while the breaker is open.
    pub async fn call<T>(
        &self,
        mut call: impl AsyncFnMut() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut failure = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let random = uuid::Uuid::new_v4().as_u128() as u64;
                let delay = backoff_ms(attempt - 1, BACKOFF_BASE_MS, BACKOFF_CAP_MS, random);
                std::thread::sleep(std::time::Duration::from_millis(delay));
            }
            let stored = self.stored();
            let mut breaker = stored.unwrap_or_default();
            let before = breaker.state;
            let now = crate::time::now_millis();
            if !breaker.acquire(now, self.policy) {
                return Err(failure.unwrap_or_else(|| {
                    let retry_in_ms = breaker.until_ms - now;
                    anyhow::Error::new(crate::pending::NotAttempted { retry_in_ms })
                        .context(format!("circuit {} is open", self.key))
                }));
            }
            self.save(&breaker, stored);
            self.log_transition(before, breaker.state);
            let result = call().await;
            let stored = self.stored();
            let mut breaker = stored.unwrap_or_default();
            let before = breaker.state;
            breaker.record(result.is_ok(), crate::time::now_millis(), self.policy);
            self.save(&breaker, stored);
            self.log_transition(before, breaker.state);
            match result {
                Ok(value) => return Ok(value),
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| anyhow::anyhow!("no attempt was made")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        threshold: 2,
        open_ms: 1000,
    };

    #[test]
    fn it_opens_after_the_threshold_then_one_trial_decides() {
        let mut b = Breaker::default();
        assert!(b.acquire(0, POLICY));
        b.record(false, 0, POLICY);
        assert_eq!(b.state, State::Closed);
        b.record(false, 10, POLICY);
        assert_eq!(b.state, State::Open);
        assert!(!b.acquire(500, POLICY));
        assert!(b.acquire(1010, POLICY));
        assert_eq!(b.state, State::HalfOpen);
        assert!(!b.acquire(1020, POLICY), "only one trial at a time");
        b.record(false, 1030, POLICY);
        assert_eq!(b.state, State::Open);
        assert!(!b.acquire(1500, POLICY));
        assert!(b.acquire(2030, POLICY));
        b.record(true, 2040, POLICY);
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn a_lost_trial_is_replaced_after_open_ms() {
        let mut b = Breaker {
            state: State::HalfOpen,
            consecutive_failures: 2,
            until_ms: 100,
        };
        assert!(!b.acquire(50, POLICY));
        assert!(b.acquire(100, POLICY));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert_eq!(backoff_ms(0, 100, 5000, 250), 250 % 101);
        assert!(backoff_ms(3, 100, 5000, u64::MAX) <= 800);
        assert!(backoff_ms(30, 100, 5000, 123_456) <= 5000);
        assert_eq!(backoff_ms(2, 100, 5000, 0), 0);
        assert_eq!(backoff_ms(2, 100, 5000, 400), 400);
        assert_eq!(backoff_ms(2, 100, 5000, 401), 0);
    }

    #[test]
    fn the_report_names_each_breaker_with_its_stored_state() {
        let open = Breaker {
            state: State::Open,
            consecutive_failures: 5,
            until_ms: 1_700_000_000_000,
        };
        assert_eq!(
            report(&[("payment_provider", open), ("webhook", Breaker::default())]),
            json!({"breakers": [
                {"name": "payment_provider", "state": "open", "consecutive_failures": 5,
                 "until_ms": 1_700_000_000_000i64},
                {"name": "webhook", "state": "closed", "consecutive_failures": 0, "until_ms": 0},
            ]})
        );
        assert_eq!(report(&[]), json!({"breakers": []}));
    }

    #[test]
    fn old_stored_state_still_reads() {
        let b: Breaker =
            serde_json::from_str(r#"{"consecutive_failures":3,"open_until_ms":5}"#).unwrap();
        assert_eq!(b.state, State::Closed);
        assert_eq!(b.consecutive_failures, 3);
    }
}
