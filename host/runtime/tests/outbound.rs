//! Outbound HTTP and Redis checked against `allowed_outbound_hosts`, and service chaining.

mod support;

use serde_json::Value;
use testkit::tempfile::TempDir;
use testkit::{Host, HostOptions, RedisServer, UpstreamServer};

struct Setup {
    host: Host,
    upstream: UpstreamServer,
    redis: RedisServer,
}

fn start() -> Setup {
    let upstream = UpstreamServer::start(200, "upstream-ok");
    let redis = RedisServer::start();
    let host = Host::start(
        support::options("outbound.toml")
            .variable("upstream_port", &upstream.port().to_string())
            .variable("redis_port", &redis.port().to_string()),
    );
    Setup {
        host,
        upstream,
        redis,
    }
}

/// Asks the component mounted at `prefix` to GET `url`.
fn fetch(host: &Host, prefix: &str, url: &str) -> Value {
    let path = format!("{prefix}/outbound-http?url={}", encode(url));
    let response = host.get(&path);
    assert_eq!(response.status, 200, "GET {path}: {}", response.body);
    response.json()
}

fn encode(text: &str) -> String {
    text.replace('%', "%25")
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('&', "%26")
        .replace('=', "%3D")
}

fn assert_denied(reply: &Value, what: &str) {
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("HttpRequestDenied"),
        "{what}: expected HttpRequestDenied, got {reply}"
    );
}

#[test]
fn allowed_host_is_reached_and_others_are_denied() {
    let setup = start();
    let host = &setup.host;
    let allowed = setup.upstream.url();

    let reply = fetch(host, "/open", &format!("{allowed}/some/path"));
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"], "upstream-ok");
    assert_eq!(setup.upstream.hits(), 1);

    let reply = fetch(host, "/closed", &format!("{allowed}/"));
    assert_denied(&reply, "a component without allowed_outbound_hosts");

    let elsewhere = UpstreamServer::start(200, "must not be reached");
    let reply = fetch(host, "/open", &format!("{}/", elsewhere.url()));
    assert_denied(&reply, "a port not in allowed_outbound_hosts");
    let reply = fetch(
        host,
        "/open",
        &format!("http://localhost:{}/", setup.upstream.port()),
    );
    assert_denied(&reply, "a host name not in allowed_outbound_hosts");

    assert_eq!(
        elsewhere.hits(),
        0,
        "a denied request must never leave the host"
    );
    assert_eq!(
        setup.upstream.hits(),
        1,
        "denied requests must never leave the host"
    );
}

#[test]
fn service_chaining_follows_allowed_hosts() {
    let setup = start();
    let host = &setup.host;

    let reply = fetch(host, "/chain", "http://callee.spin.internal/deep/path?x=1");
    assert_eq!(reply["status"], 200, "{reply}");
    let echo: Value = serde_json::from_str(reply["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|_| panic!("chained response is not the probe's echo: {reply}"));
    assert_eq!(echo["env"]["COMPONENT"], "callee", "{echo}");
    assert_eq!(echo["headers"]["spin-path-info"], "/deep/path", "{echo}");
    assert_eq!(echo["query"], "x=1", "{echo}");

    let reply = fetch(host, "/chain", "http://public-callee.spin.internal/");
    assert_denied(&reply, "chaining to a component not listed");
    let reply = fetch(host, "/closed", "http://callee.spin.internal/");
    assert_denied(&reply, "chaining without any allowed host");

    let reply = fetch(host, "/chain-any", "http://public-callee.spin.internal/x");
    assert_eq!(
        reply["status"], 200,
        "*.spin.internal allows every component: {reply}"
    );
    let echo: Value = serde_json::from_str(reply["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|_| panic!("chained response is not the probe's echo: {reply}"));
    assert_eq!(echo["env"]["COMPONENT"], "public-callee", "{echo}");

    let reply = fetch(
        host,
        "/chain-any",
        "http://no-such-component.spin.internal/",
    );
    assert!(
        reply.get("error").is_some() || reply["status"] != 200,
        "{reply}"
    );

    assert_eq!(setup.upstream.hits(), 0);
}

#[test]
fn relative_urls_reach_the_app_only_with_self() {
    let setup = start();
    let host = &setup.host;

    let reply = fetch(host, "/selfish", "/public-callee/from-self");
    assert_eq!(
        reply["status"], 200,
        "http://self allows relative URLs: {reply}"
    );
    let echo: Value = serde_json::from_str(reply["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|_| panic!("relative request did not reach the probe: {reply}"));
    assert_eq!(echo["env"]["COMPONENT"], "public-callee", "{echo}");
    assert_eq!(echo["headers"]["spin-path-info"], "/from-self", "{echo}");

    let reply = fetch(host, "/closed", "/public-callee/from-closed");
    assert_denied(&reply, "a relative URL without http://self");
}

#[test]
fn outbound_redis_is_checked_against_allowed_hosts() {
    let setup = start();
    let host = &setup.host;
    let address = setup.redis.address();

    let path = format!(
        "/open/outbound-redis?op=set&key=greeting&address={}",
        encode(&address)
    );
    let response = host.post(&path, b"hello from wasm");
    assert_eq!(response.json()["ok"], true, "{}", response.body);
    assert_eq!(
        setup.redis.get("greeting").as_deref(),
        Some("hello from wasm")
    );

    let path = format!(
        "/open/outbound-redis?op=get&key=greeting&address={}",
        encode(&address)
    );
    assert_eq!(host.get(&path).json()["value"], "hello from wasm");

    let path = format!(
        "/closed/outbound-redis?op=get&key=greeting&address={}",
        encode(&address)
    );
    let reply = host.get(&path).json();
    assert_eq!(
        reply["error"], "invalid-address",
        "Spin's answer to a denied address: {reply}"
    );
}

#[test]
fn redis_component_needing_chaining_is_refused() {
    let redis = RedisServer::start();
    let result = Host::try_start(
        support::options("redis-chaining.toml").variable("redis_address", &redis.address()),
    );
    let failure = match result {
        Ok(_) => panic!("a Redis-triggered component asking for *.spin.internal was accepted"),
        Err(failure) => failure,
    };
    assert!(failure.status.is_some(), "the host must exit: {failure}");
    assert!(
        failure.logs.contains("chatty-sink"),
        "the error must name the component: {failure}"
    );
    assert!(
        failure.logs.to_lowercase().contains("chaining"),
        "the error must say service chaining is the problem: {failure}"
    );
}

/// Three requests, one instance each, from the component allowed to reach `upstream`; returns
/// how many connections they took.
fn connections_for_three_requests(upstream: &UpstreamServer, options: HostOptions) -> usize {
    let host = Host::start(
        options
            .variable("upstream_port", &upstream.port().to_string())
            .variable("redis_port", "1"),
    );
    for n in 0..3 {
        let reply = fetch(&host, "/open", &format!("{}/call/{n}", upstream.url()));
        assert_eq!(reply["status"], 200, "{reply}");
        assert_eq!(reply["body"], "kept", "{reply}");
    }
    assert_eq!(upstream.hits(), 3);
    upstream.connections()
}

#[test]
fn later_instances_reuse_pooled_connections() {
    let upstream = UpstreamServer::keep_alive(200, "kept");
    let connections = connections_for_three_requests(&upstream, support::options("outbound.toml"));
    assert_eq!(
        connections, 1,
        "each instance opened a connection of its own instead of reusing the pool's"
    );
}

#[test]
fn connection_pooling_off_opens_a_connection_per_request() {
    let dir = TempDir::new().expect("temp dir");
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(&config, "[outbound_http]\nconnection_pooling = false\n")
        .expect("write runtime config");
    let upstream = UpstreamServer::keep_alive(200, "kept");
    let options = support::options("outbound.toml").runtime_config(&config);
    assert_eq!(connections_for_three_requests(&upstream, options), 3);
}

/// Three requests sent together, one instance each, to an upstream that holds each for a
/// second; returns the most it held at once.
fn overlap_of_three_requests(max_connections: Option<usize>) -> usize {
    let dir = TempDir::new().expect("temp dir");
    let config = dir.path().join("runtime-config.toml");
    let limit = max_connections.map_or(String::new(), |n| format!("max_connections = {n}\n"));
    std::fs::write(
        &config,
        format!("[outbound_http]\nconnection_pooling = false\n{limit}"),
    )
    .expect("write runtime config");
    let upstream = UpstreamServer::slow(200, "slow", std::time::Duration::from_secs(1));
    let host = Host::start(
        support::options("outbound.toml")
            .runtime_config(&config)
            .variable("upstream_port", &upstream.port().to_string())
            .variable("redis_port", "1"),
    );
    std::thread::scope(|scope| {
        for n in 0..3 {
            let (host, url) = (&host, format!("{}/call/{n}", upstream.url()));
            scope.spawn(move || {
                let reply = fetch(host, "/open", &url);
                assert_eq!(reply["status"], 200, "{reply}");
            });
        }
    });
    assert_eq!(upstream.hits(), 3);
    upstream.peak()
}

#[test]
fn max_connections_makes_requests_wait_for_a_connection_to_close() {
    assert!(
        overlap_of_three_requests(None) > 1,
        "without a limit the requests must overlap, or this test proves nothing"
    );
    assert_eq!(
        overlap_of_three_requests(Some(1)),
        1,
        "with max_connections = 1 a second connection was open at once"
    );
}
