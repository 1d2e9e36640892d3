//! Any message received on a channel is decoded to a wake or an envelope and a typed event, or
//! refused with an error, without panicking; a decoded envelope survives a JSON round trip, its
//! MAC is checked without panicking and refused unless signed, and once signed it verifies
//! after the round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shop_kit::envelope::Envelope;
use shop_kit::seal::{Forged, Keys};

fuzz_target!(|data: &[u8]| {
    let _ = shop_kit::wake::parse(data);
    if let Ok(envelope) = Envelope::from_bytes(data) {
        let _ = envelope.event();
        let _ = (envelope.order_id(), envelope.label());
        let json = serde_json::to_vec(&envelope).expect("an envelope serializes");
        let again = Envelope::from_bytes(&json).expect("a serialized envelope decodes");
        assert_eq!(again.seq, envelope.seq);
        assert_eq!(again.partition, envelope.partition);
        assert_eq!(again.type_name, envelope.type_name);

        let keys = Keys::new("fuzz-key").expect("a key");
        let verdict = keys.verify(&envelope);
        if envelope.mac.is_empty() {
            assert_eq!(verdict, Err(Forged::Unsigned));
        }
        let mut signed = envelope.clone();
        keys.sign(&mut signed);
        let wire = serde_json::to_vec(&signed).expect("a signed envelope serializes");
        let received = Envelope::from_bytes(&wire).expect("a signed envelope decodes");
        assert_eq!(keys.verify(&received), Ok(()));
    }
});
