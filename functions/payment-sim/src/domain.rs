//! The simulated provider: charges, refunds and injected faults. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shop_kit::body::{is_plain_id, Fields};
use shop_kit::ApiError;

/// The token that always declines.
pub const DECLINE_TOKEN: &str = "tok_decline";
pub const MAX_AMOUNT_CENTS: i64 = 10_000_000_000;
pub const MAX_LATENCY_MS: i64 = 30_000;

/// Faults switched on by `PUT /payment-sim/faults`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Share of calls answered 503, from 0.0 to 1.0.
    pub fail_rate: f64,
    /// Delay added to every call.
    pub latency_ms: u64,
    /// Every call answers 503.
    pub down: bool,
}

impl Faults {
    /// Validates a body; fields left out keep their current value.
    pub fn parse(body: &Map<String, Value>, current: Faults) -> Result<Self, ApiError> {
        let f = Fields::new(body);
        f.only(&["fail_rate", "latency_ms", "down"])?;
        Ok(Self {
            fail_rate: f
                .opt_number("fail_rate", 0.0, 1.0)?
                .unwrap_or(current.fail_rate),
            latency_ms: f
                .opt_int("latency_ms", 0, MAX_LATENCY_MS)?
                .map_or(current.latency_ms, |n| n as u64),
            down: f.opt_bool("down")?.unwrap_or(current.down),
        })
    }

    /// Whether a call fails, given a uniform random number in `[0, 1)`.
    pub fn fails(&self, roll: f64) -> bool {
        self.down || roll < self.fail_rate
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    Captured,
    Declined,
    Refunded,
}

/// A validated charge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub amount_cents: i64,
    pub currency: String,
    pub token: String,
    pub idempotency_key: String,
}

fn key_field(f: &Fields, name: &str) -> Result<String, ApiError> {
    let key = f.string(name, 1, 200)?;
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(name, "must be visible ASCII"));
    }
    Ok(key)
}

impl ChargeRequest {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body);
        f.only(&["amount_cents", "currency", "token", "idempotency_key"])?;
        let amount_cents = f.int("amount_cents", 1, MAX_AMOUNT_CENTS)?;
        let currency = f.string("currency", 3, 3)?;
        if !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ApiError::invalid(
                "currency",
                "must be an ISO 4217 code like USD",
            ));
        }
        let token = f.string("token", 1, 128)?;
        if !is_plain_id(&token) {
            return Err(ApiError::invalid(
                "token",
                "may hold only letters, digits, '_' and '-'",
            ));
        }
        Ok(Self {
            amount_cents,
            currency,
            token,
            idempotency_key: key_field(&f, "idempotency_key")?,
        })
    }
}

/// A charge as the provider keeps it (and answers it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub status: ChargeStatus,
    pub provider_ref: String,
    pub amount_cents: i64,
    pub currency: String,
    pub token: String,
    pub idempotency_key: String,
}

impl Charge {
    /// Decides a new charge: the decline token declines, anything else is captured.
    pub fn decide(req: ChargeRequest, provider_ref: String) -> Self {
        let status = if req.token == DECLINE_TOKEN {
            ChargeStatus::Declined
        } else {
            ChargeStatus::Captured
        };
        Self {
            status,
            provider_ref,
            amount_cents: req.amount_cents,
            currency: req.currency,
            token: req.token,
            idempotency_key: req.idempotency_key,
        }
    }

    /// Whether a retry carries the same request as the charge it replays.
    pub fn same_request(&self, req: &ChargeRequest) -> bool {
        self.amount_cents == req.amount_cents
            && self.currency == req.currency
            && self.token == req.token
    }
}

/// A validated refund request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub provider_ref: String,
    pub amount_cents: i64,
    pub idempotency_key: String,
}

impl RefundRequest {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body);
        f.only(&["provider_ref", "amount_cents", "idempotency_key"])?;
        let provider_ref = f.string("provider_ref", 1, 128)?;
        if !is_plain_id(&provider_ref) {
            return Err(ApiError::invalid(
                "provider_ref",
                "is not a provider reference",
            ));
        }
        Ok(Self {
            provider_ref,
            amount_cents: f.int("amount_cents", 1, MAX_AMOUNT_CENTS)?,
            idempotency_key: key_field(&f, "idempotency_key")?,
        })
    }
}

/// A refund as the provider keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub status: ChargeStatus,
    pub refund_ref: String,
    pub provider_ref: String,
    pub amount_cents: i64,
}

/// Refunds `charge`, which must be captured and at least `amount_cents`.
pub fn refund(
    charge: &mut Charge,
    req: &RefundRequest,
    refund_ref: String,
) -> Result<Refund, ApiError> {
    match charge.status {
        ChargeStatus::Declined => Err(ApiError::conflict("a declined charge cannot be refunded")),
        ChargeStatus::Refunded => Err(ApiError::conflict("the charge is already refunded")),
        ChargeStatus::Captured if req.amount_cents > charge.amount_cents => Err(ApiError::invalid(
            "amount_cents",
            "exceeds the captured amount",
        )),
        ChargeStatus::Captured => {
            charge.status = ChargeStatus::Refunded;
            Ok(Refund {
                status: ChargeStatus::Refunded,
                refund_ref,
                provider_ref: charge.provider_ref.clone(),
                amount_cents: req.amount_cents,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn req(token: &str) -> ChargeRequest {
        ChargeRequest::parse(&body(json!({"amount_cents": 500, "currency": "USD", "token": token, "idempotency_key": "o1"}))).unwrap()
    }

    #[test]
    fn the_decline_token_declines() {
        assert_eq!(
            Charge::decide(req("tok_visa"), "ch_1".into()).status,
            ChargeStatus::Captured
        );
        assert_eq!(
            Charge::decide(req(DECLINE_TOKEN), "ch_2".into()).status,
            ChargeStatus::Declined
        );
    }

    #[test]
    fn charge_requests_are_validated() {
        for (input, field) in [
            (
                json!({"amount_cents": 0, "currency": "USD", "token": "t", "idempotency_key": "k"}),
                "amount_cents",
            ),
            (
                json!({"amount_cents": 1, "currency": "usd", "token": "t", "idempotency_key": "k"}),
                "currency",
            ),
            (
                json!({"amount_cents": 1, "currency": "USD", "token": "a b", "idempotency_key": "k"}),
                "token",
            ),
            (
                json!({"amount_cents": 1, "currency": "USD", "token": "t"}),
                "idempotency_key",
            ),
        ] {
            let err = ChargeRequest::parse(&body(input)).unwrap_err();
            assert!(err.message.starts_with(field), "{}", err.message);
        }
    }

    #[test]
    fn a_replay_must_match_the_first_request() {
        let charge = Charge::decide(req("tok_visa"), "ch_1".into());
        assert!(charge.same_request(&req("tok_visa")));
        assert!(!charge.same_request(&req("tok_other")));
    }

    #[test]
    fn only_captured_charges_refund_once() {
        let mut charge = Charge::decide(req("tok_visa"), "ch_1".into());
        let r = RefundRequest {
            provider_ref: "ch_1".into(),
            amount_cents: 500,
            idempotency_key: "r".into(),
        };
        assert!(refund(&mut charge, &r, "re_1".into()).is_ok());
        assert_eq!(
            refund(&mut charge, &r, "re_2".into())
                .unwrap_err()
                .code
                .status(),
            409
        );
        let mut declined = Charge::decide(req(DECLINE_TOKEN), "ch_2".into());
        assert!(refund(&mut declined, &r, "re_3".into()).is_err());
    }

    #[test]
    fn faults_merge_and_decide() {
        let f = Faults::parse(&body(json!({"fail_rate": 0.5})), Faults::default()).unwrap();
        assert!(f.fails(0.2) && !f.fails(0.7));
        let f = Faults::parse(&body(json!({"down": true})), f).unwrap();
        assert!(f.fails(0.99) && f.fail_rate == 0.5);
        assert!(Faults::parse(&body(json!({"fail_rate": 2})), f).is_err());
        assert!(Faults::parse(&body(json!({"latency_ms": -1})), f).is_err());
    }
}
