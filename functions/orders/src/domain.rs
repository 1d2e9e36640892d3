//! Orders: the order, its validation and its state machine. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use shop_events::{
    CancelReason, OrderCancelled, OrderConfirmed, OrderCreated, OrderLine, PricedLine, ShopEvent,
};
use shop_kit::body::{check_sku, is_plain_id, Fields};
use shop_kit::ApiError;

pub const MAX_ITEMS: usize = 50;
pub const MAX_QUANTITY: i64 = 1000;
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Reserved,
    Confirmed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Reserved => "reserved",
            Status::Confirmed => "confirmed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Status::Pending,
            Status::Reserved,
            Status::Confirmed,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    fn is_open(self) -> bool {
        matches!(self, Status::Pending | Status::Reserved)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_cents: Option<i64>,
}

/// One step of the order's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub status: Status,
    pub at: String,
    pub reason: Option<String>,
    /// What a person needs beyond the reason: the provider's refusal, or which event was
    /// parked and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The reason of a history step that notes a parked event without changing the status.
pub const EVENT_PARKED: &str = "event_parked";

impl Step {
    /// What caused the step, for a person debugging the saga: each transition has exactly one
    /// cause, a request to orders or an event of another function (`<function>: <cause>`).
    pub fn source(&self) -> &'static str {
        match (self.status, self.reason.as_deref()) {
            (_, Some(EVENT_PARKED)) => "dead letter",
            (Status::Pending, _) => "orders: POST /orders",
            (Status::Reserved, _) => "inventory: stock-reserved",
            (Status::Confirmed, _) => "billing: payment-captured",
            (Status::Cancelled, Some("out_of_stock")) => "inventory: stock-rejected",
            (Status::Cancelled, Some("payment_declined" | "payment_rejected")) => {
                "billing: payment-declined"
            }
            (Status::Cancelled, _) => "orders: POST /orders/{id}/cancel",
        }
    }

    fn view(&self) -> Value {
        json!({
            "status": self.status,
            "at": self.at,
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: Status,
    pub items: Vec<Item>,
    pub total_cents: Option<i64>,
    pub cancel_reason: Option<String>,
    pub payment_token: String,
    pub created_at: String,
    pub updated_at: String,
    pub history: Vec<Step>,
}

/// A validated `POST /orders` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: String,
    pub items: Vec<(String, u32)>,
    pub payment_token: String,
}

impl NewOrder {
    /// Validates every field; the error names the first bad one.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body);
        f.only(&["customer_id", "items", "payment_token"])?;
        let customer_id = f.string("customer_id", 1, MAX_ID_LEN)?;
        if !is_plain_id(&customer_id) {
            return Err(ApiError::invalid(
                "customer_id",
                "may hold only letters, digits, '_' and '-'",
            ));
        }
        let items = f.array("items", 1, MAX_ITEMS, |v, path| {
            let item = Fields::nested(v, path.clone())?;
            item.only(&["sku", "quantity"])?;
            let sku = item.string("sku", 1, 64)?;
            check_sku(&format!("{path}.sku"), &sku)?;
            let quantity = item.int("quantity", 1, MAX_QUANTITY)? as u32;
            Ok((sku, quantity))
        })?;
        for (i, (sku, _)) in items.iter().enumerate() {
            if items[..i].iter().any(|(s, _)| s == sku) {
                return Err(ApiError::invalid(
                    &format!("items[{i}].sku"),
                    "duplicate SKU; combine the quantities",
                ));
            }
        }
        let payment_token = f.string("payment_token", 1, 128)?;
        if !is_plain_id(&payment_token) {
            return Err(ApiError::invalid(
                "payment_token",
                "may hold only letters, digits, '_' and '-'",
            ));
        }
        Ok(Self {
            customer_id,
            items,
            payment_token,
        })
    }

    /// The request in a canonical form, compared when an `Idempotency-Key` is reused.
    pub fn canonical(&self) -> String {
        json!({
            "customer_id": self.customer_id,
            "items": self.items,
            "payment_token": self.payment_token,
        })
        .to_string()
    }
}

impl Order {
    /// A new pending order and the event announcing it.
    pub fn place(id: String, new: NewOrder, now: &str) -> (Self, ShopEvent) {
        let order = Order {
            id,
            customer_id: new.customer_id,
            status: Status::Pending,
            items: new
                .items
                .into_iter()
                .map(|(sku, quantity)| Item {
                    sku,
                    quantity,
                    unit_price_cents: None,
                })
                .collect(),
            total_cents: None,
            cancel_reason: None,
            payment_token: new.payment_token,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            history: vec![Step {
                status: Status::Pending,
                at: now.to_string(),
                reason: None,
                detail: None,
            }],
        };
        let event = ShopEvent::OrderCreated(OrderCreated {
            order_id: order.id.clone(),
            customer_id: order.customer_id.clone(),
            items: order
                .items
                .iter()
                .map(|i| OrderLine {
                    sku: i.sku.clone(),
                    quantity: i.quantity,
                })
                .collect(),
            payment_token: order.payment_token.clone(),
        });
        (order, event)
    }

    fn move_to(&mut self, status: Status, reason: Option<&str>, now: &str) {
        self.status = status;
        self.updated_at = now.to_string();
        self.history.push(Step {
            status,
            at: now.to_string(),
            reason: reason.map(str::to_string),
            detail: None,
        });
    }

    /// Notes in the history that a function parked an event about this order; the status
    /// stays as it is.
    pub fn event_parked(&mut self, detail: String, now: &str) {
        self.updated_at = now.to_string();
        self.history.push(Step {
            status: self.status,
            at: now.to_string(),
            reason: Some(EVENT_PARKED.to_string()),
            detail: Some(detail),
        });
    }

    fn cancel(&mut self, reason: CancelReason, now: &str) -> Option<ShopEvent> {
        if !self.status.is_open() {
            return None;
        }
        self.cancel_reason = Some(reason.as_str().to_string());
        self.move_to(Status::Cancelled, Some(reason.as_str()), now);
        Some(ShopEvent::OrderCancelled(OrderCancelled {
            order_id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            reason,
        }))
    }

    /// Inventory priced and held every line. Prices are recorded whatever the status (the
    /// payment may have been captured first: channels are not ordered with each other).
    pub fn stock_reserved(&mut self, lines: &[PricedLine], total_cents: i64, now: &str) {
        for item in &mut self.items {
            if let Some(line) = lines.iter().find(|l| l.sku == item.sku) {
                item.unit_price_cents = Some(line.unit_price_cents);
            }
        }
        self.total_cents = Some(total_cents);
        self.updated_at = now.to_string();
        if self.status == Status::Pending {
            self.move_to(Status::Reserved, None, now);
        }
    }

    pub fn stock_rejected(&mut self, now: &str) -> Option<ShopEvent> {
        self.cancel(CancelReason::OutOfStock, now)
    }

    /// The payment failed: declined by the card's issuer, or the charge request refused by
    /// the provider (billing's reason then starts with `provider_rejected`), which the
    /// cancel reason and the history's detail name.
    pub fn payment_declined(&mut self, reason: &str, now: &str) -> Option<ShopEvent> {
        let (cause, detail) = if reason.starts_with("provider_rejected") {
            (CancelReason::PaymentRejected, Some(reason.to_string()))
        } else {
            (CancelReason::PaymentDeclined, None)
        };
        let event = self.cancel(cause, now)?;
        if let Some(step) = self.history.last_mut() {
            step.detail = detail;
        }
        Some(event)
    }

    /// The customer cancels; only an order that is not final can be cancelled.
    pub fn cancel_by_customer(&mut self, now: &str) -> Result<ShopEvent, ApiError> {
        let status = self.status;
        self.cancel(CancelReason::CancelledByCustomer, now)
            .ok_or_else(|| {
                ApiError::conflict(format!(
                    "order {} is {} and can no longer be cancelled",
                    self.id,
                    status.as_str()
                ))
            })
    }

    /// The payment was captured: the order is confirmed, unless it was cancelled meanwhile
    /// (billing then refunds).
    pub fn payment_captured(&mut self, amount_cents: i64, now: &str) -> Option<ShopEvent> {
        if !self.status.is_open() {
            return None;
        }
        if self.total_cents.is_none() {
            self.total_cents = Some(amount_cents);
        }
        self.move_to(Status::Confirmed, None, now);
        Some(ShopEvent::OrderConfirmed(OrderConfirmed {
            order_id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            total_cents: amount_cents,
        }))
    }

    /// The order as the API shows it (without the payment token).
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "customer_id": self.customer_id,
            "status": self.status.as_str(),
            "items": self.items,
            "total_cents": self.total_cents,
            "cancel_reason": self.cancel_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "history": self.history.iter().map(Step::view).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn new_order() -> NewOrder {
        NewOrder::parse(&body(json!({
            "customer_id": "c1",
            "items": [{"sku": "A-1", "quantity": 2}, {"sku": "B-2", "quantity": 1}],
            "payment_token": "tok_visa"
        })))
        .unwrap()
    }

    fn placed() -> Order {
        Order::place("o1".into(), new_order(), "t0").0
    }

    #[test]
    fn every_field_is_validated() {
        let cases = [
            (
                json!({"items": [{"sku": "A", "quantity": 1}], "payment_token": "t"}),
                "customer_id",
            ),
            (
                json!({"customer_id": "a b", "items": [{"sku": "A", "quantity": 1}], "payment_token": "t"}),
                "customer_id",
            ),
            (
                json!({"customer_id": "c", "items": [], "payment_token": "t"}),
                "items",
            ),
            (
                json!({"customer_id": "c", "items": [{"sku": "A", "quantity": 0}], "payment_token": "t"}),
                "items[0].quantity",
            ),
            (
                json!({"customer_id": "c", "items": [{"sku": "A", "quantity": 1001}], "payment_token": "t"}),
                "items[0].quantity",
            ),
            (
                json!({"customer_id": "c", "items": [{"sku": "A", "quantity": "2"}], "payment_token": "t"}),
                "items[0].quantity",
            ),
            (
                json!({"customer_id": "c", "items": [{"sku": "a b", "quantity": 1}], "payment_token": "t"}),
                "items[0].sku",
            ),
            (
                json!({"customer_id": "c", "items": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 1}], "payment_token": "t"}),
                "items[1].sku",
            ),
            (
                json!({"customer_id": "c", "items": [{"sku": "A", "quantity": 1}]}),
                "payment_token",
            ),
            (
                json!({"customer_id": "c", "items": [{"sku": "A", "quantity": 1}], "payment_token": "t", "x": 1}),
                "x",
            ),
        ];
        for (input, field) in cases {
            let err = NewOrder::parse(&body(input.clone())).unwrap_err();
            assert!(
                err.message.starts_with(&format!("{field}:")),
                "{input}: {}",
                err.message
            );
        }
        let too_many: Vec<Value> = (0..51)
            .map(|i| json!({"sku": format!("S{i}"), "quantity": 1}))
            .collect();
        let err = NewOrder::parse(&body(
            json!({"customer_id": "c", "items": too_many, "payment_token": "t"}),
        ))
        .unwrap_err();
        assert!(err.message.starts_with("items:"));
    }

    #[test]
    fn the_happy_path_ends_confirmed() {
        let mut o = placed();
        let lines = vec![
            PricedLine {
                sku: "A-1".into(),
                quantity: 2,
                unit_price_cents: 100,
            },
            PricedLine {
                sku: "B-2".into(),
                quantity: 1,
                unit_price_cents: 50,
            },
        ];
        o.stock_reserved(&lines, 250, "t1");
        assert_eq!(o.status, Status::Reserved);
        assert_eq!(o.items[0].unit_price_cents, Some(100));
        let event = o.payment_captured(250, "t2").unwrap();
        assert_eq!(event.type_name(), "order-confirmed");
        assert_eq!(o.status, Status::Confirmed);
        assert_eq!(o.history.len(), 3);
        assert!(o.cancel_by_customer("t3").is_err());
        let sources: Vec<Value> = o.view()["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["source"].clone())
            .collect();
        assert_eq!(
            sources,
            [
                "orders: POST /orders",
                "inventory: stock-reserved",
                "billing: payment-captured"
            ]
        );
    }

    #[test]
    fn a_capture_that_overtakes_the_reservation_still_confirms() {
        let mut o = placed();
        assert!(o.payment_captured(250, "t1").is_some());
        o.stock_reserved(&[], 250, "t2");
        assert_eq!(o.status, Status::Confirmed);
    }

    #[test]
    fn a_charge_the_provider_refused_names_the_refusal() {
        let mut o = placed();
        let reason = "provider_rejected: 400 INVALID_ARGUMENT: amount_cents: must be at least 1";
        assert!(o.payment_declined(reason, "t1").is_some());
        assert_eq!(o.cancel_reason.as_deref(), Some("payment_rejected"));
        let step = &o.view()["history"][1];
        assert_eq!(step["reason"], "payment_rejected");
        assert_eq!(step["detail"], reason);
        assert_eq!(step["source"], "billing: payment-declined");
    }

    #[test]
    fn a_parked_event_is_noted_without_changing_the_status() {
        let mut o = placed();
        o.event_parked("billing parked stock-reserved e1: boom".into(), "t1");
        assert_eq!(o.status, Status::Pending);
        let step = &o.view()["history"][1];
        assert_eq!(
            (step["reason"].as_str(), step["source"].as_str()),
            (Some(EVENT_PARKED), Some("dead letter"))
        );
        assert_eq!(step["detail"], "billing parked stock-reserved e1: boom");
    }

    #[test]
    fn cancellations_carry_their_reason_and_happen_once() {
        let mut o = placed();
        assert!(o.stock_rejected("t1").is_some());
        assert_eq!(o.cancel_reason.as_deref(), Some("out_of_stock"));
        assert_eq!(o.history[1].source(), "inventory: stock-rejected");
        assert!(o.payment_declined("card_declined", "t2").is_none());
        assert!(o.payment_captured(10, "t3").is_none());
        assert_eq!(o.status, Status::Cancelled);
        let mut o = placed();
        assert!(o.payment_declined("card_declined", "t1").is_some());
        assert_eq!(o.cancel_reason.as_deref(), Some("payment_declined"));
        assert_eq!(o.history[1].detail, None);
        let mut o = placed();
        assert!(o.cancel_by_customer("t1").is_ok());
        assert_eq!(o.cancel_reason.as_deref(), Some("cancelled_by_customer"));
        assert_eq!(o.cancel_by_customer("t2").unwrap_err().code.status(), 409);
    }

    #[test]
    fn the_view_hides_the_payment_token() {
        let v = placed().view();
        assert!(v.get("payment_token").is_none());
        assert_eq!(v["status"], "pending");
        assert!(v["items"][0]["unit_price_cents"].is_null());
        assert!(v["total_cents"].is_null());
    }

    #[test]
    fn the_canonical_form_ignores_formatting() {
        let a = new_order();
        let b = NewOrder::parse(&body(
            json!({"payment_token": "tok_visa", "customer_id": "c1",
            "items": [{"quantity": 2, "sku": "A-1"}, {"sku": "B-2", "quantity": 1}]}),
        ))
        .unwrap();
        assert_eq!(a.canonical(), b.canonical());
    }
}
