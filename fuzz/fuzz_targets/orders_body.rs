//! The `POST /orders` body decoder and validator: any bytes yield an order or a structured
//! error, never a panic; an accepted order has a canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orders::domain::NewOrder;
use shop_kit::body::parse_object;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_object(data) else {
        return;
    };
    if let Ok(order) = NewOrder::parse(&body) {
        assert!(!order.items.is_empty());
        let _ = order.canonical();
    }
});
