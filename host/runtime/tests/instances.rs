//! Execution model: a fresh instance per request, traps contained, graceful shutdown, and a
//! fast restart thanks to the compiled-code cache.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use testkit::{eventually, Host};

#[test]
fn every_request_gets_a_fresh_instance() {
    let host = Host::start(support::options("catch-all.toml"));
    for _ in 0..3 {
        let response = host.get("/counter");
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(
            response.json()["count"],
            1,
            "instance state leaked between requests"
        );
    }
}

/// Memory an instance wrote must read as zero in the next instance that gets the same slot,
/// however the pooling allocator resets it (memset, madvise, or only the pages it finds dirty).
#[test]
fn memory_written_by_one_instance_is_zero_in_the_next() {
    let host = Host::start(support::options("catch-all.toml"));
    let mut first_pages = Vec::new();
    for _ in 0..4 {
        let response = host.get("/residue?pages=32");
        assert_eq!(response.status, 200, "{}", response.body);
        let report = response.json();
        assert_eq!(report["pages"], 32, "{report}");
        assert_eq!(
            report["nonzero"], 0,
            "an earlier instance's bytes leaked: {report}"
        );
        first_pages.push(report["first_page"].clone());
    }
    // The same layout each time: the writes of one request landed where the next one looked.
    assert!(
        first_pages.windows(2).all(|w| w[0] == w[1]),
        "{first_pages:?}"
    );
}

#[test]
fn a_trapping_component_gets_500_and_the_host_goes_on() {
    let host = Host::start(support::options("catch-all.toml"));
    let response = host.get("/panic");
    assert_eq!(response.status, 500, "{}", response.body);
    let response = host.get("/echo");
    assert_eq!(
        response.status, 200,
        "the host must keep serving: {}",
        response.body
    );
    // The guest's last stderr line reaches the log when its instance is dropped, which may come
    // after the response, and the host writes logs from a background thread: poll for it.
    let forwarded = eventually(Duration::from_secs(5), || {
        host.logs().contains("probe asked to panic").then_some(())
    });
    assert!(
        forwarded.is_some(),
        "the guest's panic message is forwarded:\n{}",
        host.logs()
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut host = Host::start(support::options("catch-all.toml"));
    let client = host.client().clone();
    let url = host.url("/sleep?ms=1500");
    let in_flight = thread::spawn(move || client.send("GET", &url, &[], &[]));
    thread::sleep(Duration::from_millis(500));

    let status = host.terminate(Duration::from_secs(15));
    let response = in_flight.join().expect("request thread");
    let response = response
        .unwrap_or_else(|error| panic!("in-flight request cut off: {error}\n{}", host.logs()));
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["slept_ms"], 1500);
    assert!(
        status.is_some_and(|status| status.success()),
        "expected a clean exit after SIGTERM, got {status:?}\n{}",
        host.logs()
    );
}

#[test]
fn restart_with_unchanged_wasm_serves_quickly() {
    let mut host = Host::start(support::options("catch-all.toml"));
    assert_eq!(host.get("/echo").status, 200);
    let started = Instant::now();
    host.restart();
    let response = host.get("/echo");
    let elapsed = started.elapsed();
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        elapsed < Duration::from_secs(3),
        "restart took {elapsed:?}; compiled code should be cached"
    );
}
