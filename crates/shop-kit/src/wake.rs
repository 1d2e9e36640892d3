//! Retrying pending events on time without an outside clock. Spin has no timer, so the
//! consumer makes one from what every target has: a message to itself. After it defers an
//! event it "arms" the wake (one row, so one loop at a time) and sends `{"wake": <arm>}` to
//! itself: on Redis to `shop.wake.<consumer>`, a channel with a subscription of its own, over
//! HTTP to `POST /<consumer>/events/wake` (delivery token). The instance that receives it
//! retries what is due, sleeps until the next event falls due, and so on; after
//! [`BUDGET_MS`] it sends the wake to itself again and ends, so no instance runs for ever.
//! The loop ends when nothing is pending. A loop that dies (instance killed, Redis restarted)
//! stops renewing its arm, which then expires after [`HOLD_MS`]: the next deferral or the
//! sweep arms a new one.

use std::time::Duration;

/// How long one instance loops before it hands over to a fresh one.
pub const BUDGET_MS: i64 = 20_000;
/// How long an arm lasts without being renewed by its loop.
pub const HOLD_MS: i64 = 10_000;
/// The longest sleep between two looks at the pending events, so that an event deferred
/// meanwhile with an earlier due time waits at most this much longer.
const MAX_NAP_MS: i64 = 1_000;

/// The wake's Redis channel for `consumer`.
pub fn channel(consumer: &str) -> String {
    format!("shop.wake.{consumer}")
}

/// A new arm: unique, so that a loop can tell its own from a newer one.
pub fn new_arm() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The wake message.
pub fn message(arm: &str) -> Vec<u8> {
    serde_json::json!({ "wake": arm }).to_string().into_bytes()
}

/// The arm a wake message carries; `None` when `payload` is not a wake message.
pub fn parse(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let object = value.as_object().filter(|o| o.len() == 1)?;
    object.get("wake")?.as_str().map(str::to_string)
}

/// The one arm of a consumer, in its store.
pub trait WakePort {
    /// Arms the wake unless an unexpired arm exists; returns the new arm to send.
    fn arm(&self, now_ms: i64) -> anyhow::Result<Option<String>>;
    /// Renews `arm`; false when another arm replaced it (its loop must stop).
    fn hold(&self, arm: &str, now_ms: i64) -> anyhow::Result<bool>;
    /// Removes `arm` unless an event is pending (checked in the same write); true when
    /// removed. A deferral that found the arm held is thus always seen by its loop.
    fn disarm(&self, arm: &str) -> anyhow::Result<bool>;
}

/// What one step of the loop decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Sleep this long, then look again.
    Sleep(i64),
    /// Out of budget with work left: send the wake again and end.
    HandOver,
    /// Nothing is pending, or another arm took over: end.
    Stop,
}

/// The loop's decision after a retry pass: `next_due` is when the earliest pending event falls
/// due, `started` when this instance began.
pub fn step(next_due: Option<i64>, now_ms: i64, started: i64) -> Step {
    match next_due {
        None => Step::Stop,
        Some(_) if now_ms - started >= BUDGET_MS => Step::HandOver,
        Some(at) => Step::Sleep((at - now_ms).clamp(20, MAX_NAP_MS)),
    }
}

/// Sleeps the instance: Spin's and this host's instances may block on the clock.
pub fn nap(ms: i64) {
    std::thread::sleep(Duration::from_millis(ms.max(0) as u64));
}

/// SQL for consumers with a SQL store: table `wake` (one row while armed).
pub mod sql {
    use super::{WakePort, HOLD_MS};
    use crate::sql::{i, t, Db};

    impl WakePort for Db {
        fn arm(&self, now_ms: i64) -> anyhow::Result<Option<String>> {
            let arm = super::new_arm();
            let taken = self.exec(
                "INSERT INTO wake (id, arm, until_ms) VALUES (1, ?1, ?3) \
                 ON CONFLICT(id) DO UPDATE SET arm = excluded.arm, until_ms = excluded.until_ms \
                 WHERE wake.until_ms <= ?2 RETURNING arm",
                &[t(&arm), i(now_ms), i(now_ms + HOLD_MS)],
            )?;
            Ok((!taken.rows.is_empty()).then_some(arm))
        }

        fn hold(&self, arm: &str, now_ms: i64) -> anyhow::Result<bool> {
            let held = self.exec(
                "UPDATE wake SET until_ms = ? WHERE arm = ? RETURNING arm",
                &[i(now_ms + HOLD_MS), t(arm)],
            )?;
            Ok(!held.rows.is_empty())
        }

        fn disarm(&self, arm: &str) -> anyhow::Result<bool> {
            let gone = self.exec(
                "DELETE FROM wake WHERE arm = ? \
                 AND NOT EXISTS (SELECT 1 FROM pending_events) RETURNING arm",
                &[t(arm)],
            )?;
            Ok(!gone.rows.is_empty())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_messages_are_told_apart_from_envelopes() {
        assert_eq!(parse(&message("a1")).as_deref(), Some("a1"));
        assert_eq!(parse(br#"{"wake": 1}"#), None);
        assert_eq!(parse(br#"{"wake": "a", "id": "x"}"#), None);
        assert_eq!(parse(b"not json"), None);
    }

    #[test]
    fn the_loop_sleeps_until_due_hands_over_and_stops() {
        assert_eq!(step(None, 5, 0), Step::Stop);
        assert_eq!(step(Some(300), 100, 0), Step::Sleep(200));
        assert_eq!(step(Some(50), 100, 0), Step::Sleep(20));
        assert_eq!(step(Some(90_000), 100, 0), Step::Sleep(MAX_NAP_MS));
        assert_eq!(step(Some(0), BUDGET_MS, 0), Step::HandOver);
    }
}
