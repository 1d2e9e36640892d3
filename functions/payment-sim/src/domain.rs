//! The simulated provider: charges, refunds and injected faults. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shop_kit::body::{is_plain_id, Fields};
use shop_kit::ApiError;

/// The token that always declines.
pub const DECLINE_TOKEN: &str = "tok_decline";
/// A token the provider does not know: the charge request is refused (400), as a real
/// provider refuses a token it never issued.
pub const INVALID_TOKEN: &str = "tok_invalid";
pub const MAX_AMOUNT_CENTS: i64 = 10_000_000_000;
pub const MAX_LATENCY_MS: i64 = 30_000;
/// How long past its latency a charge may stay `processing`. Beyond that the instance that
/// took it died mid-charge: like a provider that crashed before committing, the charge never
/// happened, so lookups miss it and its key charges afresh.
pub const ABANDONED_AFTER_MS: i64 = 5_000;

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
    /// Received, not yet decided: the injected latency is running.
    Processing,
    Captured,
    Declined,
    /// Captured, then refunded in full (partial refunds leave it `captured`).
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
        if token == INVALID_TOKEN {
            return Err(ApiError::invalid("token", "no such token"));
        }
        Ok(Self {
            amount_cents,
            currency,
            token,
            idempotency_key: key_field(&f, "idempotency_key")?,
        })
    }
}

/// A charge as the provider keeps it. It holds the token to tell a replay from a conflicting
/// request; answers show [`Charge::view`], which leaves the token out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub status: ChargeStatus,
    pub provider_ref: String,
    pub amount_cents: i64,
    pub currency: String,
    pub token: String,
    pub idempotency_key: String,
    /// When the latency of a `processing` charge is over (0 for charges kept before there
    /// was a `processing` status).
    #[serde(default)]
    pub settles_at_ms: i64,
    /// The sum of its refunds so far, never more than `amount_cents`.
    #[serde(default)]
    pub refunded_cents: i64,
}

/// A charge as answered: everything but the card token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargeView {
    pub provider_ref: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: ChargeStatus,
    pub idempotency_key: String,
    pub refunded_cents: i64,
}

/// What the provider does with a charge request, given what it holds under the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Nothing is held under the key: charge.
    Fresh,
    /// The key's earlier charge, settled, with the same request: answer it again.
    Replay(Charge),
}

impl Charge {
    /// Receives a new charge: `processing` until `latency_ms` from `now_ms`.
    pub fn receive(req: ChargeRequest, provider_ref: String, now_ms: i64, latency_ms: u64) -> Self {
        Self {
            status: ChargeStatus::Processing,
            provider_ref,
            amount_cents: req.amount_cents,
            currency: req.currency,
            token: req.token,
            idempotency_key: req.idempotency_key,
            settles_at_ms: now_ms.saturating_add(i64::try_from(latency_ms).unwrap_or(i64::MAX)),
            refunded_cents: 0,
        }
    }

    /// Decides a processing charge: the decline token declines, anything else is captured.
    /// The outcome depends on the request alone, so whoever settles it settles it alike.
    pub fn settle(&mut self) {
        if self.status == ChargeStatus::Processing {
            self.status = if self.token == DECLINE_TOKEN {
                ChargeStatus::Declined
            } else {
                ChargeStatus::Captured
            };
        }
    }

    /// Whether the instance that took this charge died before settling it (see
    /// [`ABANDONED_AFTER_MS`]).
    pub fn abandoned(&self, now_ms: i64) -> bool {
        self.status == ChargeStatus::Processing
            && now_ms > self.settles_at_ms.saturating_add(ABANDONED_AFTER_MS)
    }

    /// Whether a retry carries the same request as the charge it replays.
    pub fn same_request(&self, req: &ChargeRequest) -> bool {
        self.amount_cents == req.amount_cents
            && self.currency == req.currency
            && self.token == req.token
    }

    pub fn view(&self) -> ChargeView {
        ChargeView {
            provider_ref: self.provider_ref.clone(),
            amount_cents: self.amount_cents,
            currency: self.currency.clone(),
            status: self.status,
            idempotency_key: self.idempotency_key.clone(),
            refunded_cents: self.refunded_cents,
        }
    }
}

/// Decides a charge request against the charge held under its key, if any (an abandoned one
/// counts as none). The key never charges twice: another request under it, or the same one
/// while the first is still processing, is a conflict, as Stripe answers both.
pub fn admit(
    existing: Option<Charge>,
    req: &ChargeRequest,
    now_ms: i64,
) -> Result<Admission, ApiError> {
    let Some(existing) = existing.filter(|c| !c.abandoned(now_ms)) else {
        return Ok(Admission::Fresh);
    };
    if !existing.same_request(req) {
        return Err(ApiError::conflict(
            "idempotency_key was already used with a different charge",
        ));
    }
    if existing.status == ChargeStatus::Processing {
        return Err(ApiError::conflict(
            "idempotency_key: a charge with this key is still processing; retry later",
        ));
    }
    Ok(Admission::Replay(existing))
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

/// A refund as the provider keeps it. `status` is the charge's once this refund was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub status: ChargeStatus,
    pub refund_ref: String,
    pub provider_ref: String,
    pub amount_cents: i64,
}

impl Refund {
    /// Whether a retry under the refund's key asks for this very refund.
    pub fn same_request(&self, req: &RefundRequest) -> bool {
        self.provider_ref == req.provider_ref && self.amount_cents == req.amount_cents
    }
}

/// Refunds `amount_cents` of a captured `charge`: refunds add up to at most the capture, and
/// the charge is `refunded` once they reach it.
pub fn refund(
    charge: &mut Charge,
    req: &RefundRequest,
    refund_ref: String,
) -> Result<Refund, ApiError> {
    let left = charge.amount_cents - charge.refunded_cents;
    match charge.status {
        ChargeStatus::Processing => Err(ApiError::conflict("the charge is still processing")),
        ChargeStatus::Declined => Err(ApiError::conflict("a declined charge cannot be refunded")),
        ChargeStatus::Refunded => Err(ApiError::conflict("the charge is already fully refunded")),
        ChargeStatus::Captured if req.amount_cents > left => Err(ApiError::invalid(
            "amount_cents",
            format!("exceeds the {left} cents of the charge not refunded yet"),
        )),
        ChargeStatus::Captured => {
            charge.refunded_cents += req.amount_cents;
            if charge.refunded_cents == charge.amount_cents {
                charge.status = ChargeStatus::Refunded;
            }
            Ok(Refund {
                status: charge.status,
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

    /// A charge received at 0 with no latency, then settled.
    fn decided(token: &str, provider_ref: &str) -> Charge {
        let mut charge = Charge::receive(req(token), provider_ref.into(), 0, 0);
        charge.settle();
        charge
    }

    #[test]
    fn an_unknown_token_is_refused() {
        let body = body(
            json!({"amount_cents": 500, "currency": "USD", "token": INVALID_TOKEN, "idempotency_key": "o1"}),
        );
        let err = ChargeRequest::parse(&body).unwrap_err();
        assert_eq!(err.code.status(), 400);
        assert!(err.message.starts_with("token:"), "{}", err.message);
    }

    #[test]
    fn a_charge_processes_then_the_decline_token_declines() {
        let mut charge = Charge::receive(req("tok_visa"), "ch_1".into(), 1_000, 300);
        assert_eq!(charge.status, ChargeStatus::Processing);
        assert_eq!(charge.settles_at_ms, 1_300);
        charge.settle();
        assert_eq!(charge.status, ChargeStatus::Captured);
        assert_eq!(
            decided(DECLINE_TOKEN, "ch_2").status,
            ChargeStatus::Declined
        );
    }

    #[test]
    fn settling_never_undoes_a_refund() {
        let mut charge = decided("tok_visa", "ch_1");
        charge.status = ChargeStatus::Refunded;
        charge.settle();
        assert_eq!(charge.status, ChargeStatus::Refunded);
    }

    #[test]
    fn answers_leave_the_token_out() {
        let view = serde_json::to_value(decided("tok_visa", "ch_1").view()).unwrap();
        assert_eq!(
            view,
            json!({"provider_ref": "ch_1", "amount_cents": 500, "currency": "USD",
                   "status": "captured", "idempotency_key": "o1", "refunded_cents": 0})
        );
    }

    #[test]
    fn a_key_replays_its_settled_charge_and_conflicts_otherwise() {
        assert_eq!(admit(None, &req("tok_visa"), 0).unwrap(), Admission::Fresh);
        let done = decided("tok_visa", "ch_1");
        assert_eq!(
            admit(Some(done.clone()), &req("tok_visa"), 0).unwrap(),
            Admission::Replay(done.clone())
        );
        let other = admit(Some(done), &req("tok_other"), 0).unwrap_err();
        assert_eq!(other.code.status(), 409);
        let mut amount = req("tok_visa");
        amount.amount_cents = 501;
        let processing = Charge::receive(req("tok_visa"), "ch_1".into(), 0, 1_000);
        assert_eq!(
            admit(Some(processing.clone()), &amount, 10)
                .unwrap_err()
                .code
                .status(),
            409
        );
        let busy = admit(Some(processing), &req("tok_visa"), 10).unwrap_err();
        assert_eq!(busy.code.status(), 409);
        assert!(
            busy.message.contains("still processing"),
            "{}",
            busy.message
        );
    }

    #[test]
    fn a_charge_left_processing_by_a_dead_instance_never_happened() {
        let processing = Charge::receive(req("tok_visa"), "ch_1".into(), 0, 1_000);
        assert!(!processing.abandoned(1_000 + ABANDONED_AFTER_MS));
        assert!(processing.abandoned(1_001 + ABANDONED_AFTER_MS));
        let mut amount = req("tok_visa");
        amount.amount_cents = 501;
        assert_eq!(
            admit(Some(processing), &amount, 1_001 + ABANDONED_AFTER_MS).unwrap(),
            Admission::Fresh
        );
        assert!(!decided("tok_visa", "ch_1").abandoned(i64::MAX));
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
        let charge = decided("tok_visa", "ch_1");
        assert!(charge.same_request(&req("tok_visa")));
        assert!(!charge.same_request(&req("tok_other")));
    }

    #[test]
    fn only_captured_charges_refund_once() {
        let mut charge = Charge::receive(req("tok_visa"), "ch_1".into(), 0, 100);
        let r = RefundRequest {
            provider_ref: "ch_1".into(),
            amount_cents: 500,
            idempotency_key: "r".into(),
        };
        let busy = refund(&mut charge, &r, "re_0".into()).unwrap_err();
        assert_eq!(
            busy.code.status(),
            409,
            "a processing charge is not refundable yet"
        );
        charge.settle();
        assert!(refund(&mut charge, &r, "re_1".into()).is_ok());
        assert_eq!(
            refund(&mut charge, &r, "re_2".into())
                .unwrap_err()
                .code
                .status(),
            409
        );
        let mut declined = decided(DECLINE_TOKEN, "ch_2");
        assert!(refund(&mut declined, &r, "re_3".into()).is_err());
    }

    #[test]
    fn partial_refunds_add_up_to_the_capture_and_no_further() {
        let mut charge = decided("tok_visa", "ch_1");
        let part = |amount_cents| RefundRequest {
            provider_ref: "ch_1".into(),
            amount_cents,
            idempotency_key: format!("r{amount_cents}"),
        };
        let first = refund(&mut charge, &part(1), "re_1".into()).unwrap();
        assert_eq!(first.status, ChargeStatus::Captured, "1 of 500 refunded");
        assert_eq!(charge.refunded_cents, 1);
        let over = refund(&mut charge, &part(500), "re_2".into()).unwrap_err();
        assert_eq!(over.code.status(), 400);
        assert!(over.message.contains("499"), "{}", over.message);
        assert_eq!(charge.refunded_cents, 1, "a refused refund changes nothing");
        let rest = refund(&mut charge, &part(499), "re_3".into()).unwrap();
        assert_eq!(rest.status, ChargeStatus::Refunded);
        assert_eq!(charge.status, ChargeStatus::Refunded);
        assert_eq!(charge.view().refunded_cents, 500);
        assert_eq!(
            refund(&mut charge, &part(1), "re_4".into())
                .unwrap_err()
                .code
                .status(),
            409
        );
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
