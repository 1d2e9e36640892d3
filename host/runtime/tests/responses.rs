//! HTTP trigger: a guest's response reaches the client whole, whichever order the guest hands
//! over head and body in (`shop_kit::reply`: body first when the stream takes all of it; the
//! SDK: head first, body streamed after).

mod support;

use testkit::Host;

/// `len` bytes of `abc…z` repeated, as the probe's `/reply` sends them.
fn alphabet(len: usize) -> String {
    (b'a'..=b'z').cycle().take(len).map(char::from).collect()
}

fn assert_whole(host: &Host, len: usize) {
    let response = host.get(&format!("/reply?bytes={len}"));
    assert_eq!(response.status, 200, "{len} bytes: {:.200}", response.body);
    assert_eq!(
        response.header("content-length"),
        Some(len.to_string().as_str()),
        "{len} bytes: {:?}",
        response.headers
    );
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.body.len(), len);
    assert!(response.body == alphabet(len), "{len} bytes: body differs");
}

#[test]
fn a_body_written_before_its_head_arrives_whole_with_its_length() {
    let host = Host::start(support::options("catch-all.toml"));
    for len in [0, 1, 37, 64 << 10, 1 << 20] {
        assert_whole(&host, len);
    }
}

#[test]
fn a_body_larger_than_the_stream_takes_at_once_follows_its_head() {
    let host = Host::start(support::options("catch-all.toml"));
    // wasmtime-wasi-http's body stream takes at most 1 MiB at once: more goes after the head.
    assert_whole(&host, (3 << 20) + 5);
}

#[test]
fn a_head_set_before_its_body_is_streamed_chunked() {
    let host = Host::start(support::options("catch-all.toml"));
    let response = host.get("/echo");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.json()["path"], "/echo");
}
