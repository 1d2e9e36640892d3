//! HTTP trigger: Spin's route priority and the `spin-*` request headers.

mod support;

use serde_json::Value;
use testkit::Host;

/// GETs `path`, expects the probe's echo, and returns it.
fn echo(host: &Host, path: &str) -> Value {
    let response = host.get(path);
    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
    response.json()
}

/// Which fixture component answered (`COMPONENT` from its manifest `environment`).
fn component(echo: &Value) -> &str {
    echo["env"]["COMPONENT"].as_str().unwrap_or("<none>")
}

fn header<'a>(echo: &'a Value, name: &str) -> &'a str {
    echo["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no header {name} in {echo}"))
}

#[test]
fn routes_follow_spin_priority() {
    let host = Host::start(support::options("routes.toml"));
    let cases = [
        ("/exact", "exact"),
        ("/wild", "wild"),
        ("/wild/", "wild"),
        ("/wild/a/b", "wild"),
        ("/wild/exact", "wild-exact"),
        ("/wild/exact/below", "wild"),
        ("/wild/inner", "wild-inner"),
        ("/wild/inner/x", "wild-inner"),
        ("/wild/innerx", "wild"),
        ("/users/42/orders/7", "params"),
        ("/star/anything/deeper", "star"),
        ("/star", "star"),
        ("/dup", "dup-last"),
    ];
    for (path, expected) in cases {
        let echo = echo(&host, path);
        assert_eq!(component(&echo), expected, "GET {path} answered by {echo}");
    }
    for path in [
        "/",
        "/exact/more",
        "/exactly",
        "/users/42/orders",
        "/users/42/orders/7/extra",
        "/hidden",
        "/nothing",
    ] {
        let response = host.get(path);
        assert_eq!(response.status, 404, "GET {path}: {}", response.body);
    }
}

#[test]
fn spin_headers_describe_the_match() {
    let host = Host::start(support::options("routes.toml"));
    let port = host.port();

    let exact = echo(&host, "/exact?q=1&r=two");
    assert_eq!(
        header(&exact, "spin-full-url"),
        format!("http://127.0.0.1:{port}/exact?q=1&r=two")
    );
    assert_eq!(header(&exact, "spin-path-info"), "");
    assert_eq!(header(&exact, "spin-matched-route"), "/exact");
    assert_eq!(header(&exact, "spin-component-route"), "/exact");
    assert_eq!(header(&exact, "spin-raw-component-route"), "/exact");
    assert_eq!(header(&exact, "spin-base-path"), "/");
    let client = header(&exact, "spin-client-addr");
    assert!(
        client.starts_with("127.0.0.1:") && client[10..].parse::<u16>().is_ok(),
        "spin-client-addr {client}"
    );
    assert_eq!(exact["query"], "q=1&r=two");
    assert_eq!(exact["path"], "/exact");

    for (path, info) in [
        ("/wild", ""),
        ("/wild/", "/"),
        ("/wild/bar", "/bar"),
        ("/wild/bar/", "/bar/"),
        ("/wild/a/b/c", "/a/b/c"),
    ] {
        let echo = echo(&host, path);
        assert_eq!(header(&echo, "spin-path-info"), info, "path-info of {path}");
        assert_eq!(header(&echo, "spin-matched-route"), "/wild/...");
        assert_eq!(header(&echo, "spin-raw-component-route"), "/wild/...");
        assert_eq!(header(&echo, "spin-component-route"), "/wild");
    }

    let params = echo(&host, "/users/42/orders/seven");
    assert_eq!(header(&params, "spin-path-match-id"), "42");
    assert_eq!(header(&params, "spin-path-match-order"), "seven");
    assert_eq!(
        header(&params, "spin-matched-route"),
        "/users/:id/orders/:order"
    );
}

/// The conformance suite's `request-shape` test (fermyon/conformance-tests): route
/// `/base/:path_segment/:path_end/...`, `GET /base/path/end/rest?key=value` with `Host:
/// example.com`. Its component requires each of these headers with these values, `_` in a
/// parameter name becoming `-` in the header, and no other `spin-*` or `spin_*` header besides
/// an optional `spin-client-addr`. (That each comes exactly once is checked on the header map
/// the guest gets, in `trigger::http`'s unit tests: the SDK's request keeps one value a name.)
#[test]
fn request_shape_conformance() {
    let host = Host::start(support::options("routes.toml"));
    let response = host.request(
        "GET",
        "/base/path/end/rest?key=value",
        &[
            ("User-Agent", "my-agent"),
            ("Accept", "*/*"),
            ("Host", "example.com"),
        ],
        b"",
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let echo = response.json();
    assert_eq!(component(&echo), "request-shape", "{echo}");
    let expected = [
        (
            "spin-raw-component-route",
            "/base/:path_segment/:path_end/...",
        ),
        (
            "spin-full-url",
            "http://example.com/base/path/end/rest?key=value",
        ),
        ("spin-path-info", "/rest"),
        ("spin-base-path", "/"),
        ("spin-component-route", "/base/:path_segment/:path_end"),
        ("spin-path-match-path-segment", "path"),
        ("spin-path-match-path-end", "end"),
        ("spin-matched-route", "/base/:path_segment/:path_end/..."),
    ];
    for (name, value) in expected {
        assert_eq!(header(&echo, name), value, "{name}");
    }
    let client = header(&echo, "spin-client-addr");
    client
        .parse::<std::net::SocketAddr>()
        .unwrap_or_else(|e| panic!("spin-client-addr {client}: {e}"));
    let headers = echo["headers"].as_object().expect("headers");
    for name in headers.keys() {
        let special = name.starts_with("spin-") || name.starts_with("spin_");
        let known = name == "spin-client-addr" || expected.iter().any(|(n, _)| n == name);
        assert!(
            !special || known,
            "unexpected special header {name}: {echo}"
        );
    }
    // The guest sees the Host header as the request's authority, as in Spin.
    assert_eq!(
        echo["uri"], "http://example.com/base/path/end/rest?key=value",
        "{echo}"
    );
    assert_eq!(echo["path"], "/base/path/end/rest");
    assert_eq!(echo["query"], "key=value");
    assert_eq!(echo["method"], "GET");
}

#[test]
fn method_body_and_connection_header() {
    let host = Host::start(support::options("routes.toml"));
    let response = host.request(
        "PUT",
        "/exact",
        &[("x-custom", "kept"), ("connection", "keep-alive")],
        b"twelve bytes",
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let echo = response.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_len"], 12);
    assert_eq!(echo["headers"]["x-custom"], "kept");
    assert!(
        echo["headers"].get("connection").is_none(),
        "Spin drops the Connection header: {echo}"
    );
}
