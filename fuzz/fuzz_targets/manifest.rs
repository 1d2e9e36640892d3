//! Any text given to the manifest parser is either refused with an error or yields a manifest
//! whose routes the router can be built from, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spin_host_config::manifest::Manifest;
use spin_host_config::routes::Router;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = Manifest::from_toml_str(text) {
        let _ = Router::from_manifest(&manifest);
    }
});
