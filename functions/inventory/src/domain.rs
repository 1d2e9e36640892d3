//! Inventory: products, stock arithmetic and all-or-nothing reservations. Pure: no I/O.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shop_events::{OrderLine, PricedLine};
use shop_kit::body::Fields;
use shop_kit::ApiError;

pub const MAX_PRICE_CENTS: i64 = 100_000_000;
pub const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    /// Units that can still be reserved.
    pub available: i64,
    /// Units held by orders that are not yet confirmed or cancelled.
    pub reserved: i64,
}

/// A validated `PUT /inventory/products/:sku` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductUpdate {
    pub name: String,
    pub price_cents: i64,
    /// New number of available units; `None` keeps the current stock (0 for a new product).
    pub available: Option<i64>,
}

impl ProductUpdate {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body);
        f.only(&["name", "price_cents", "available"])?;
        Ok(Self {
            name: f.string("name", 1, 200)?,
            // At least a cent: an order totalling zero could not be charged.
            price_cents: f.int("price_cents", 1, MAX_PRICE_CENTS)?,
            available: f.opt_int("available", 0, MAX_STOCK)?,
        })
    }

    /// Creates the product or updates it; reserved units are left alone.
    pub fn apply(self, sku: &str, current: Option<Product>) -> Product {
        let (available, reserved) = current.map(|p| (p.available, p.reserved)).unwrap_or((0, 0));
        Product {
            sku: sku.to_string(),
            name: self.name,
            price_cents: self.price_cents,
            available: self.available.unwrap_or(available),
            reserved,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// Units moved from available to reserved.
    Reserved,
    /// Nothing was held (out of stock).
    Rejected,
    /// Paid: the units left both available and reserved.
    Sold,
    /// Cancelled: the units went back to available (or were never held).
    Released,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Reserved => "reserved",
            HoldStatus::Rejected => "rejected",
            HoldStatus::Sold => "sold",
            HoldStatus::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Reserved, Self::Rejected, Self::Sold, Self::Released]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// What inventory holds for one order.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub order_id: String,
    pub status: HoldStatus,
    pub lines: Vec<PricedLine>,
}

/// Why an order could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub sku: String,
    pub reason: &'static str,
}

/// Products by SKU, as loaded for one order.
pub type Stock = HashMap<String, Product>;

/// Reserves every line or none: checks them all, then moves units from available to reserved.
pub fn reserve(
    order_id: &str,
    items: &[OrderLine],
    stock: &mut Stock,
) -> Result<(Hold, i64), Rejection> {
    let mut lines = Vec::with_capacity(items.len());
    for item in items {
        let Some(product) = stock.get(&item.sku) else {
            return Err(Rejection {
                sku: item.sku.clone(),
                reason: "unknown_sku",
            });
        };
        if product.available < i64::from(item.quantity) {
            return Err(Rejection {
                sku: item.sku.clone(),
                reason: "insufficient_stock",
            });
        }
        lines.push(PricedLine {
            sku: item.sku.clone(),
            quantity: item.quantity,
            unit_price_cents: product.price_cents,
        });
    }
    let mut total = 0;
    for line in &lines {
        if let Some(product) = stock.get_mut(&line.sku) {
            product.available -= i64::from(line.quantity);
            product.reserved += i64::from(line.quantity);
        }
        total += line.unit_price_cents * i64::from(line.quantity);
    }
    Ok((
        Hold {
            order_id: order_id.to_string(),
            status: HoldStatus::Reserved,
            lines,
        },
        total,
    ))
}

impl Hold {
    /// An order that was cancelled before anything was held for it.
    pub fn released_before_reservation(order_id: &str) -> Self {
        Self {
            order_id: order_id.to_string(),
            status: HoldStatus::Released,
            lines: vec![],
        }
    }

    pub fn rejected(order_id: &str) -> Self {
        Self {
            order_id: order_id.to_string(),
            status: HoldStatus::Rejected,
            lines: vec![],
        }
    }

    /// Payment captured: reserved units are sold. Returns whether anything changed.
    pub fn sell(&mut self, stock: &mut Stock) -> bool {
        if self.status != HoldStatus::Reserved {
            return false;
        }
        for line in &self.lines {
            if let Some(p) = stock.get_mut(&line.sku) {
                p.reserved -= i64::from(line.quantity);
            }
        }
        self.status = HoldStatus::Sold;
        true
    }

    /// Order cancelled or payment declined: the units go back to available, including units
    /// already sold when a capture raced the cancellation. Returns whether anything changed.
    pub fn release(&mut self, stock: &mut Stock) -> bool {
        let was = self.status;
        if !matches!(was, HoldStatus::Reserved | HoldStatus::Sold) {
            return false;
        }
        for line in &self.lines {
            if let Some(p) = stock.get_mut(&line.sku) {
                p.available += i64::from(line.quantity);
                if was == HoldStatus::Reserved {
                    p.reserved -= i64::from(line.quantity);
                }
            }
        }
        self.status = HoldStatus::Released;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stock(entries: &[(&str, i64, i64)]) -> Stock {
        entries
            .iter()
            .map(|(sku, price, available)| {
                (
                    sku.to_string(),
                    Product {
                        sku: sku.to_string(),
                        name: sku.to_string(),
                        price_cents: *price,
                        available: *available,
                        reserved: 0,
                    },
                )
            })
            .collect()
    }

    fn line(sku: &str, quantity: u32) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            quantity,
        }
    }

    #[test]
    fn a_reservation_takes_every_line_and_prices_it() {
        let mut s = stock(&[("A", 100, 5), ("B", 30, 1)]);
        let (hold, total) = reserve("o1", &[line("A", 2), line("B", 1)], &mut s).unwrap();
        assert_eq!(total, 230);
        assert_eq!(hold.lines[0].unit_price_cents, 100);
        assert_eq!((s["A"].available, s["A"].reserved), (3, 2));
        assert_eq!((s["B"].available, s["B"].reserved), (0, 1));
    }

    #[test]
    fn one_short_line_holds_nothing() {
        let mut s = stock(&[("A", 100, 5), ("B", 30, 1)]);
        let before = s.clone();
        let err = reserve("o1", &[line("A", 2), line("B", 2)], &mut s).unwrap_err();
        assert_eq!(
            err,
            Rejection {
                sku: "B".into(),
                reason: "insufficient_stock"
            }
        );
        assert_eq!(s, before);
        let err = reserve("o1", &[line("Z", 1)], &mut s).unwrap_err();
        assert_eq!(err.reason, "unknown_sku");
    }

    #[test]
    fn sold_units_leave_both_counters() {
        let mut s = stock(&[("A", 100, 5)]);
        let (mut hold, _) = reserve("o1", &[line("A", 2)], &mut s).unwrap();
        assert!(hold.sell(&mut s));
        assert!(!hold.sell(&mut s));
        assert_eq!((s["A"].available, s["A"].reserved), (3, 0));
    }

    #[test]
    fn release_returns_units_whether_reserved_or_already_sold() {
        let mut s = stock(&[("A", 100, 5)]);
        let (mut hold, _) = reserve("o1", &[line("A", 2)], &mut s).unwrap();
        assert!(hold.release(&mut s));
        assert!(!hold.release(&mut s));
        assert_eq!((s["A"].available, s["A"].reserved), (5, 0));

        let (mut hold, _) = reserve("o2", &[line("A", 2)], &mut s).unwrap();
        hold.sell(&mut s);
        assert!(hold.release(&mut s));
        assert_eq!((s["A"].available, s["A"].reserved), (5, 0));
        assert!(!hold.sell(&mut s), "a released hold is never sold");
    }

    #[test]
    fn product_updates_are_validated_and_keep_reservations() {
        let body = |v: Value| v.as_object().unwrap().clone();
        for price in [-1, 0] {
            let err = ProductUpdate::parse(&body(json!({"name": "x", "price_cents": price})))
                .unwrap_err();
            assert_eq!(err.code.status(), 400);
            assert!(err.message.starts_with("price_cents:"), "{}", err.message);
        }
        let err = ProductUpdate::parse(&body(json!({"price_cents": 1}))).unwrap_err();
        assert!(err.message.starts_with("name:"));
        let update = ProductUpdate::parse(&body(
            json!({"name": "Mug", "price_cents": 900, "available": 7}),
        ))
        .unwrap();
        let current = Product {
            sku: "A".into(),
            name: "old".into(),
            price_cents: 1,
            available: 1,
            reserved: 3,
        };
        let p = update.apply("A", Some(current));
        assert_eq!(
            (p.name.as_str(), p.price_cents, p.available, p.reserved),
            ("Mug", 900, 7, 3)
        );
    }
}
