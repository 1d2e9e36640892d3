//! The payment simulator's body decoders (charge, refund, faults): any bytes yield a request or
//! a structured error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payment_sim::domain::{ChargeRequest, Faults, RefundRequest};
use shop_kit::body::parse_object;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_object(data) else {
        return;
    };
    let _ = ChargeRequest::parse(&body);
    let _ = RefundRequest::parse(&body);
    if let Ok(faults) = Faults::parse(&body, Faults::default()) {
        assert!((0.0..=1.0).contains(&faults.fail_rate));
    }
});
