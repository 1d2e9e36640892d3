//! `--max-request-body`: larger bodies are answered 413 before any component runs.

mod support;

use testkit::Host;

#[test]
fn bodies_over_the_limit_get_413() {
    let host = Host::start(support::options("catch-all.toml").args(["--max-request-body", "1024"]));

    let response = host.post("/echo", &[b'a'; 1024]);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["body_len"], 1024);

    let response = host.post("/echo", &[b'a'; 4096]);
    assert_eq!(response.status, 413, "{}", response.body);

    let response = host.get("/echo");
    assert_eq!(response.status, 200, "the host keeps serving after a 413");
}
