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
