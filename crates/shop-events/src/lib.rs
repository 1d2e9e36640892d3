//! Event payloads of the shop saga. The types are generated from the project's WIT package
//! (`wit/shop-events.wit`) so producers and consumers can never disagree on a payload.

mod generated {
    wit_bindgen::generate!({
        world: "events",
        path: "../../wit",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        generate_unused_types: true,
    });
}

pub use generated::shop::events::saga::{
    CancelReason, EventParked, OrderCancelled, OrderConfirmed, OrderCreated, OrderLine,
    PaymentCaptured, PaymentDeclined, PaymentRefunded, PricedLine, ShopEvent, StockRejected,
    StockReserved,
};

/// A payload that does not match the event type it was announced as.
#[derive(Debug)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Maps each WIT case to its wire name (the case name as written in WIT) in both directions.
macro_rules! event_cases {
    ($($case:ident => $name:literal),* $(,)?) => {
        impl ShopEvent {
            /// The envelope `type` of this event.
            pub fn type_name(&self) -> &'static str {
                match self { $(ShopEvent::$case(_) => $name,)* }
            }

            /// The order the event is about; every event of the saga names one.
            pub fn order_id(&self) -> &str {
                match self { $(ShopEvent::$case(e) => &e.order_id,)* }
            }

            /// The envelope `data` of this event.
            pub fn data(&self) -> serde_json::Value {
                let value = match self { $(ShopEvent::$case(e) => serde_json::to_value(e),)* };
                // Serialising plain records of strings and integers cannot fail.
                value.unwrap_or(serde_json::Value::Null)
            }

            /// Rebuilds an event from an envelope's `type` and `data`.
            pub fn decode(type_name: &str, data: serde_json::Value) -> Result<Self, DecodeError> {
                match type_name {
                    $($name => serde_json::from_value(data)
                        .map(ShopEvent::$case)
                        .map_err(|e| DecodeError(format!("{}: {e}", $name))),)*
                    other => Err(DecodeError(format!("unknown event type {other:?}"))),
                }
            }
        }
    };
}

event_cases! {
    OrderCreated => "order-created",
    OrderConfirmed => "order-confirmed",
    OrderCancelled => "order-cancelled",
    StockReserved => "stock-reserved",
    StockRejected => "stock-rejected",
    PaymentCaptured => "payment-captured",
    PaymentDeclined => "payment-declined",
    PaymentRefunded => "payment-refunded",
    EventParked => "event-parked",
}

impl CancelReason {
    /// The reason as the HTTP API spells it (`cancel_reason`).
    pub fn as_str(&self) -> &'static str {
        match self {
            CancelReason::OutOfStock => "out_of_stock",
            CancelReason::PaymentDeclined => "payment_declined",
            CancelReason::PaymentRejected => "payment_rejected",
            CancelReason::CancelledByCustomer => "cancelled_by_customer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_its_wire_form() {
        let event = ShopEvent::OrderCancelled(OrderCancelled {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            reason: CancelReason::PaymentDeclined,
        });
        let back = ShopEvent::decode(event.type_name(), event.data()).unwrap();
        assert_eq!(back, event);
        assert_eq!(event.type_name(), "order-cancelled");
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_rejected() {
        let err = ShopEvent::decode("stock-reserved", serde_json::json!({"order_id": 1}));
        assert!(err.is_err());
        assert!(ShopEvent::decode("nope", serde_json::json!({})).is_err());
    }
}
