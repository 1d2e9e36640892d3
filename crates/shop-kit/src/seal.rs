//! The credentials the functions share among themselves, all derived from one secret variable,
//! `internal_key`: the MAC every envelope carries, the bearer token of the event feeds, and
//! each order's cancel token. Each purpose has its own key, `HMAC-SHA256(internal_key,
//! purpose)`, so that no credential a client or an operator sees reveals another (docs/adr/0007).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::log::{events, Logger};
use crate::{Envelope, TraceContext};

type HmacSha256 = Hmac<Sha256>;

/// What a key derived from `internal_key` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The `mac` of every envelope.
    EnvelopeMac,
    /// The bearer token consumers present to read another function's event feed.
    FeedToken,
    /// The token `POST /orders` gives the customer to cancel that order.
    CancelToken,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::EnvelopeMac => b"shop/envelope-mac/v1",
            Purpose::FeedToken => b"shop/feed-token/v1",
            Purpose::CancelToken => b"shop/cancel-token/v1",
        }
    }
}

/// The keys derived from a non-empty shared secret, once, when it is read.
#[derive(Clone)]
pub struct Keys {
    envelope_mac: [u8; 32],
    feed_token: [u8; 32],
    cancel_token: [u8; 32],
}

impl Keys {
    /// `None` for an empty secret: with no secret nothing can be signed or verified, and
    /// every check fails closed.
    pub fn new(secret: &str) -> Option<Self> {
        let secret = secret.trim().as_bytes();
        let derive = |purpose: Purpose| hmac(secret, purpose.label());
        (!secret.is_empty()).then(|| Self {
            envelope_mac: derive(Purpose::EnvelopeMac),
            feed_token: derive(Purpose::FeedToken),
            cancel_token: derive(Purpose::CancelToken),
        })
    }

    fn key(&self, purpose: Purpose) -> &[u8] {
        match purpose {
            Purpose::EnvelopeMac => &self.envelope_mac,
            Purpose::FeedToken => &self.feed_token,
            Purpose::CancelToken => &self.cancel_token,
        }
    }

    /// `hex(HMAC(key(purpose), message))`: a token bound to `message` (an order id, ...).
    pub fn token(&self, purpose: Purpose, message: &str) -> String {
        hex(&hmac(self.key(purpose), message.as_bytes()))
    }

    /// Whether `presented` is the token of `message`, compared in constant time.
    pub fn check_token(&self, purpose: Purpose, message: &str, presented: &str) -> bool {
        let expected = self.token(purpose, message);
        bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// Sets `env.mac` to the MAC of its canonical bytes.
    pub fn sign(&self, env: &mut Envelope) {
        env.mac = hex(&hmac(self.key(Purpose::EnvelopeMac), &canonical(env)));
    }

    /// Whether `env.mac` is the MAC of its canonical bytes (constant-time comparison).
    pub fn verify(&self, env: &Envelope) -> Result<(), Forged> {
        if env.mac.is_empty() {
            return Err(Forged::Unsigned);
        }
        let mut mac = HmacSha256::new_from_slice(self.key(Purpose::EnvelopeMac))
            .expect("HMAC takes a key of any length");
        mac.update(&canonical(env));
        let presented = unhex(&env.mac).ok_or(Forged::BadMac)?;
        mac.verify_slice(&presented).map_err(|_| Forged::BadMac)
    }
}

/// Why an envelope is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forged {
    Unsigned,
    BadMac,
    /// The receiving function has no `internal_key`, so it can trust nothing.
    NoKey,
    /// A genuine copy addressed to another consumer: its `seq` numbers another stream.
    Misaddressed,
}

impl Forged {
    /// The reason as logs and metrics label it.
    pub fn code(self) -> &'static str {
        match self {
            Forged::Unsigned => "unsigned",
            Forged::BadMac => "bad_mac",
            Forged::NoKey => "no_key",
            Forged::Misaddressed => "misaddressed",
        }
    }
}

impl std::fmt::Display for Forged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Forged::Unsigned => "the envelope carries no mac",
            Forged::BadMac => "the envelope's mac does not match its content",
            Forged::NoKey => "internal_key is not configured, so no envelope can be verified",
            Forged::Misaddressed => "the envelope is addressed to another consumer",
        })
    }
}

impl std::error::Error for Forged {}

/// Verifies `env` with `keys`, failing closed without them.
pub fn verify(keys: Option<&Keys>, env: &Envelope) -> Result<(), Forged> {
    keys.ok_or(Forged::NoKey)?.verify(env)
}

/// Checks that a received envelope comes from a function of the shop (its MAC verifies with
/// `keys`, from `internal_key`) and is the copy addressed to `consumer`. A refusal is logged as
/// a `forged` event, which the host counts: whoever can publish on Redis or reach a delivery
/// route still cannot make an event, nor move one consumer's copy into another's stream.
pub fn authentic(keys: Option<&Keys>, env: &Envelope, consumer: &str) -> Result<(), Forged> {
    let verdict = verify(keys, env).and_then(|()| {
        (env.consumer == consumer)
            .then_some(())
            .ok_or(Forged::Misaddressed)
    });
    if let Err(reason) = verdict {
        let log = Logger::shared(&TraceContext::from_header(Some(&env.traceparent)));
        log.event(
            "warn",
            events::FORGED,
            &format!("{} refused: {reason}", env.label()),
            None,
            serde_json::json!({ "reason": reason.code() }),
        );
    }
    verdict
}

/// The bytes the MAC covers: the envelope as JSON without its `mac`, fields in declaration
/// order and object keys sorted (serde_json's map), so producer and consumer compute the same
/// bytes from the same content.
fn canonical(env: &Envelope) -> Vec<u8> {
    let unsigned = Envelope {
        mac: String::new(),
        ..env.clone()
    };
    serde_json::to_vec(&unsigned).expect("an envelope always serialises")
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex; by hand because it is one line.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_events::{PaymentCaptured, ShopEvent};

    fn envelope() -> Envelope {
        let event = ShopEvent::PaymentCaptured(PaymentCaptured {
            order_id: "o1".into(),
            amount_cents: 500,
            provider_ref: "ch_1".into(),
        });
        Envelope::wrap("billing", "orders", 3, &event)
    }

    #[test]
    fn a_signed_envelope_verifies_after_a_round_trip_through_json() {
        let keys = Keys::new("s3cret").unwrap();
        let mut env = envelope();
        keys.sign(&mut env);
        assert_eq!(env.mac.len(), 64);
        let back = Envelope::from_bytes(&serde_json::to_vec(&env).unwrap()).unwrap();
        assert_eq!(keys.verify(&back), Ok(()));
    }

    #[test]
    fn unsigned_altered_or_foreign_envelopes_are_refused() {
        let keys = Keys::new("s3cret").unwrap();
        assert_eq!(keys.verify(&envelope()), Err(Forged::Unsigned));
        let mut env = envelope();
        keys.sign(&mut env);
        let mut later = env.clone();
        later.seq += 1;
        assert_eq!(keys.verify(&later), Err(Forged::BadMac));
        let mut elsewhere = env.clone();
        elsewhere.consumer = "inventory".into();
        assert_eq!(keys.verify(&elsewhere), Err(Forged::BadMac));
        let mut data = env.clone();
        data.data["amount_cents"] = 1.into();
        assert_eq!(keys.verify(&data), Err(Forged::BadMac));
        let mut junk = env.clone();
        junk.mac = "zz".into();
        assert_eq!(keys.verify(&junk), Err(Forged::BadMac));
        assert_eq!(
            Keys::new("other").unwrap().verify(&env),
            Err(Forged::BadMac)
        );
        assert_eq!(verify(None, &env), Err(Forged::NoKey));
        assert!(Keys::new("  ").is_none());
    }

    #[test]
    fn tokens_are_bound_to_their_purpose_and_message() {
        let keys = Keys::new("s3cret").unwrap();
        let cancel = keys.token(Purpose::CancelToken, "o1");
        assert!(keys.check_token(Purpose::CancelToken, "o1", &cancel));
        assert!(!keys.check_token(Purpose::CancelToken, "o2", &cancel));
        assert!(!keys.check_token(Purpose::FeedToken, "o1", &cancel));
        assert!(!keys.check_token(Purpose::CancelToken, "o1", ""));
        assert_ne!(
            Keys::new("other")
                .unwrap()
                .token(Purpose::CancelToken, "o1"),
            cancel
        );
    }
}
