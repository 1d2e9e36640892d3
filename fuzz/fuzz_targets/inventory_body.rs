//! The `PUT /inventory/products/{sku}` body decoder and validator: any bytes yield an update
//! or a structured error, never a panic.
#![no_main]

use inventory::domain::ProductUpdate;
use libfuzzer_sys::fuzz_target;
use shop_kit::body::parse_object;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_object(data) else {
        return;
    };
    if let Ok(update) = ProductUpdate::parse(&body) {
        let _ = update.apply("SKU-1", None);
    }
});
