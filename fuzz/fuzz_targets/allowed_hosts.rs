//! Input: `allowed_outbound_hosts` entries one per line, then a last line with a URL. Parsing
//! the entries and checking the URL against them never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spin_host_config::allowed_hosts::{AllowedHost, AllowedHosts};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines: Vec<&str> = text.lines().collect();
    let Some(url) = lines.pop() else {
        return;
    };
    for line in &lines {
        if let Ok(host) = AllowedHost::parse(line) {
            let _ = host.to_string();
            let _ = host.is_for_service_chaining();
        }
    }
    if let Ok(hosts) = AllowedHosts::new(&lines, &["orders", "inventory"]) {
        let _ = hosts.allows_url(url, "https");
        let _ = hosts.allows_relative(&["http", "https"]);
    }
});
