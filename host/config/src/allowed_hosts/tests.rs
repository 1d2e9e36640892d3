use super::*;

fn hosts(entries: &[&str]) -> AllowedHosts {
    AllowedHosts::new(entries, &["orders", "payment-sim"]).unwrap()
}

fn parse_err(entry: &str) -> String {
    format!("{:#}", AllowedHost::parse(entry).unwrap_err())
}

#[test]
fn scheme_host_and_default_port_must_all_match() {
    let h = hosts(&["https://example.com"]);
    assert!(h.allows_url("https://example.com", "https"));
    assert!(h.allows_url("https://example.com:443/path?q=1", "https"));
    assert!(!h.allows_url("http://example.com", "http"));
    assert!(!h.allows_url("https://example.com:8443", "https"));
    assert!(!h.allows_url("https://api.example.com", "https"));
    assert!(!h.allows_url("https://example.org", "https"));
}

#[test]
fn default_ports_per_scheme() {
    for (scheme, port) in [
        ("http", 80),
        ("https", 443),
        ("redis", 6379),
        ("mysql", 3306),
        ("postgres", 5432),
        ("mqtt", 1883),
    ] {
        assert_eq!(well_known_port(scheme), Some(port));
        let h = hosts(&[&format!("{scheme}://db.local")]);
        assert!(
            h.allows_url(&format!("{scheme}://db.local:{port}"), scheme),
            "{scheme}"
        );
        assert!(
            !h.allows_url(&format!("{scheme}://db.local:1"), scheme),
            "{scheme}"
        );
    }
    assert_eq!(well_known_port("ftp"), None);
    let e = parse_err("*://example.com");
    assert!(e.contains("does not have a known default port"), "{e}");
    assert!(hosts(&["*://example.com:*"]).allows_url("ftp://example.com:21", "ftp"));
    // Port `*` matches even a URL whose scheme has no default port, as in Spin.
    assert!(hosts(&["*://example.com:*"]).allows_url("ftp://example.com", "ftp"));
    assert!(!hosts(&["*://example.com:21"]).allows_url("ftp://example.com", "ftp"));
}

#[test]
fn wildcards_everywhere() {
    let h = hosts(&["*://*:*"]);
    assert!(h.allows_url("redis://10.1.2.3:7000", "redis"));
    assert!(h.allows_url("https://anything.example", "https"));
    assert!(h.allows_relative(&["http"]));

    let h = hosts(&["https://*"]);
    assert!(h.allows_url("https://x.y", "https"));
    assert!(!h.allows_url("https://x.y:8443", "https"));

    let h = hosts(&["*://localhost:*"]);
    assert!(h.allows_url("redis://localhost:6380", "redis"));
    assert!(!h.allows_url("redis://127.0.0.1:6380", "redis"));
}

#[test]
fn subdomain_wildcard_is_a_suffix_match() {
    let h = hosts(&["https://*.example.com"]);
    assert!(h.allows_url("https://api.example.com", "https"));
    assert!(h.allows_url("https://a.b.example.com", "https"));
    assert!(!h.allows_url("https://example.com", "https"));
    assert!(!h.allows_url("https://badexample.com", "https"));
    assert!(!h.allows_url("https://10.0.0.1", "https"));
}

#[test]
fn ports_and_ranges() {
    let h = hosts(&["http://localhost:3000"]);
    assert!(h.allows_url("http://localhost:3000/x", "http"));
    assert!(!h.allows_url("http://localhost", "http"));

    let h = hosts(&["http://localhost:8000..8002"]);
    assert!(h.allows_url("http://localhost:8000", "http"));
    assert!(h.allows_url("http://localhost:8001", "http"));
    assert!(
        !h.allows_url("http://localhost:8002", "http"),
        "range end is excluded"
    );
    assert!(!h.allows_url("http://localhost:7999", "http"));

    let h = hosts(&["http://localhost:*"]);
    assert!(h.allows_url("http://localhost:1", "http"));

    let e = parse_err("http://localhost:80a");
    assert!(e.contains("port \"80a\" is not a number"), "{e}");
    let e = parse_err("http://localhost:1..x");
    assert!(e.contains("contains non-number"), "{e}");
}

#[test]
fn cidr_and_ip_literals() {
    let h = hosts(&["redis://10.0.0.0/8:6379", "https://192.168.1.77/24"]);
    assert!(h.allows_url("redis://10.200.3.4:6379", "redis"));
    assert!(!h.allows_url("redis://11.0.0.1:6379", "redis"));
    assert!(!h.allows_url("redis://example.com:6379", "redis"));
    assert!(h.allows_url("https://192.168.1.5", "https"));

    let h = hosts(&["http://127.0.0.1:*"]);
    assert!(h.allows_url("http://127.0.0.1:3000", "http"));
    assert!(!h.allows_url("http://localhost:3000", "http"));

    let h = hosts(&["http://[::1]:8080"]);
    assert!(h.allows_url("http://[::1]:8080/", "http"));
    let h = hosts(&["*://fd00::/8:*"]);
    assert!(h.allows_url("http://[fd00::1]:80", "http"));
}

/// `wasi:sockets` addresses, as the conformance suite's `tcp-sockets*` tests allow them
/// (fermyon/conformance-tests): `*://127.0.0.1:<port>`, `*://127.0.0.0/24:<port>`, and denied
/// for another IP (`127.0.0.2`) or another port.
#[test]
fn socket_addresses() {
    let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
    let exact = hosts(&["*://127.0.0.1:7"]);
    assert!(exact.allows_socket("tcp", addr("127.0.0.1:7")));
    assert!(exact.allows_socket("udp", addr("127.0.0.1:7")));
    assert!(!exact.allows_socket("tcp", addr("127.0.0.1:8")));
    assert!(!exact.allows_socket("tcp", addr("127.0.0.2:7")));
    assert!(!exact.allows_socket("tcp", addr("[::ffff:127.0.0.1]:7")));

    let range = hosts(&["*://127.0.0.0/24:7"]);
    assert!(range.allows_socket("tcp", addr("127.0.0.1:7")));
    assert!(range.allows_socket("tcp", addr("127.0.0.255:7")));
    assert!(!range.allows_socket("tcp", addr("127.0.1.1:7")));
    assert!(!range.allows_socket("tcp", addr("127.0.0.1:6001")));

    assert!(!hosts(&["*://127.0.0.2:6001"]).allows_socket("tcp", addr("127.0.0.1:6001")));
    assert!(!hosts(&["*://127.0.0.1:6002"]).allows_socket("tcp", addr("127.0.0.1:6001")));

    let by_scheme = hosts(&["tcp://10.0.0.0/8:1000..2000", "http://10.1.1.1:*"]);
    assert!(by_scheme.allows_socket("tcp", addr("10.9.8.7:1999")));
    assert!(!by_scheme.allows_socket("tcp", addr("10.9.8.7:2000")));
    assert!(!by_scheme.allows_socket("udp", addr("10.9.8.7:1500")));
    assert!(
        !hosts(&["http://10.1.1.1:*"]).allows_socket("tcp", addr("10.1.1.1:80")),
        "an http:// entry allows no socket"
    );

    assert!(!hosts(&["*://localhost:7"]).allows_socket("tcp", addr("127.0.0.1:7")));
    assert!(hosts(&["*://*:*"]).allows_socket("tcp", addr("[2001:db8::1]:443")));
    assert!(hosts(&["tcp://[::1]:7"]).allows_socket("tcp", addr("[::1]:7")));
    assert!(!hosts(&[]).allows_socket("tcp", addr("127.0.0.1:7")));
}

#[test]
fn self_allows_only_relative_requests() {
    let h = hosts(&["http://self", "https://self.alt"]);
    assert!(h.allows_relative(&["http"]));
    assert!(h.allows_relative(&["https"]));
    assert!(!h.allows_relative(&["redis"]));
    assert!(!h.allows_url("http://self", "http"));
    assert!(!hosts(&["https://example.com"]).allows_relative(&["https"]));
}

#[test]
fn urls_without_scheme_use_the_default() {
    let h = hosts(&["redis://cache.local"]);
    assert!(h.allows_url("cache.local:6379", "redis"));
    assert!(h.allows_url("cache.local", "redis"));
    assert!(!h.allows_url("cache.local", "http"));
    assert!(!h.allows_url("http://[broken", "http"));
}

#[test]
fn bad_entries_are_explained() {
    for (entry, expected) in [
        ("example.com", "does not contain a scheme"),
        ("*", "'*://*:*' allows all outbound networking"),
        ("", "is not an allowed outbound host format"),
        ("https://example.com/path", "must not include a path"),
        (
            "https://example.com:443/path",
            "has a path but is not allowed to",
        ),
        (
            "https://*.*.example.com",
            "wildcards are allowed only as prefixes",
        ),
        (
            "https://api.*.com",
            "wildcards are allowed only as subdomains",
        ),
        ("https://*.10.0.0.1", "wildcard suffix must be a domain"),
        (
            "ht-tp://example.com:80",
            "only alphabetic characters are allowed",
        ),
        (
            "{http,https}://example.com:80",
            "scheme lists are not supported",
        ),
        ("https://{a,b}", "host lists are not supported"),
        ("https://a:{1,2}", "port lists are not supported"),
    ] {
        let e = parse_err(entry);
        assert!(
            e.contains(expected),
            "{entry}: expected {expected:?} in {e}"
        );
    }
    assert!(AllowedHost::parse("https://example.com/").is_ok());
    let e = format!(
        "{:#}",
        AllowedHosts::new(&["insecure:allow-all"], &[]).unwrap_err()
    );
    assert!(e.contains("use '*://*:*'"), "{e}");
}

#[test]
fn service_chaining() {
    let h = hosts(&["http://payment-sim.spin.internal"]);
    assert!(h.allows_chaining_to("payment-sim"));
    assert!(!h.allows_chaining_to("orders"));
    assert!(h.allows_url("http://payment-sim.spin.internal/charge", "http"));
    assert!(!h.allows_url("https://payment-sim.spin.internal/charge", "https"));

    let h = hosts(&["http://*.spin.internal"]);
    assert!(h.allows_chaining_to("orders"));
    assert!(h.allows_chaining_to("payment-sim"));
    assert!(
        !h.allows_chaining_to("unknown"),
        "expanded only to the app's components"
    );
    assert_eq!(h.entries().len(), 2);

    assert!(!hosts(&["https://example.com"]).allows_chaining_to("orders"));
    assert!(hosts(&["*://*:*"]).allows_chaining_to("orders"));

    assert_eq!(chaining_target("orders.spin.internal"), Some("orders"));
    assert_eq!(chaining_target("orders.spin.internal:80"), Some("orders"));
    assert_eq!(chaining_target("orders.example.com"), None);
    assert_eq!(chaining_target("a.b.spin.internal"), None);
    assert!(AllowedHost::parse("http://*.spin.internal")
        .unwrap()
        .is_for_service_chaining());
    assert!(AllowedHost::parse("http://x.spin.internal")
        .unwrap()
        .is_for_service_chaining());
    assert!(!AllowedHost::parse("http://*.example.com")
        .unwrap()
        .is_for_service_chaining());
    assert_eq!(
        AllowedHost::parse(" http://x.spin.internal")
            .unwrap()
            .to_string(),
        " http://x.spin.internal"
    );
}

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "chain"
[application.trigger.redis]
address = "redis://127.0.0.1:6379"
[variables]
api_host = { default = "api.example.com" }
optional_endpoint = { default = "" }
[[trigger.http]]
route = "/..."
component = "web"
[[trigger.http]]
route = { private = true }
component = "backend"
[[trigger.redis]]
channel = "events"
component = "worker"
[component.web]
source = "web.wasm"
allowed_outbound_hosts = ["http://*.spin.internal", "https://{{ api_host }}", "{{ optional_endpoint }}"]
[component.backend]
source = "backend.wasm"
[component.worker]
source = "worker.wasm"
allowed_outbound_hosts = ["https://{{ api_host }}:8443"]
"#;

fn app(text: &str) -> (Manifest, Variables) {
    let m = Manifest::from_toml_str(text).unwrap();
    let v = Variables::resolve(&m, |_| None, &[]).unwrap();
    (m, v)
}

#[test]
fn for_component_expands_templates() {
    let (m, v) = app(APP);
    let web = AllowedHosts::for_component(&m, &v, "web").unwrap();
    assert!(web.allows_url("https://api.example.com", "https"));
    assert!(web.allows_chaining_to("backend"));
    assert!(web.allows_chaining_to("worker"));
    assert_eq!(
        web.entries().len(),
        4,
        "3 chaining targets + api host; empty entry dropped"
    );

    let worker = AllowedHosts::for_component(&m, &v, "worker").unwrap();
    assert!(worker.allows_url("https://api.example.com:8443", "https"));
    assert!(!worker.allows_url("https://api.example.com", "https"));
    assert!(!worker.allows_chaining_to("web"));

    let backend = AllowedHosts::for_component(&m, &v, "backend").unwrap();
    assert!(backend.entries().is_empty());
    assert!(!backend.allows_url("https://api.example.com", "https"));

    assert!(AllowedHosts::for_component(&m, &v, "missing").is_err());
}

/// The conformance suite's `tcp-sockets-ip-range-variable-permission` test: a CIDR range
/// built from two variables.
#[test]
fn for_component_expands_a_cidr_range_from_variables() {
    let (m, v) = app(r#"
spin_manifest_version = 2
[application]
name = "sockets"
[variables]
addr_prefix = { default = "127.0.0.0" }
prefix_len = { default = "24" }
[[trigger.http]]
route = "/"
component = "test"
[component.test]
source = "test.wasm"
allowed_outbound_hosts = ["*://{{ addr_prefix }}/{{ prefix_len }}:6001"]
"#);
    let test = AllowedHosts::for_component(&m, &v, "test").unwrap();
    let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
    assert!(test.allows_socket("tcp", addr("127.0.0.1:6001")));
    assert!(test.allows_socket("tcp", addr("127.0.0.200:6001")));
    assert!(!test.allows_socket("tcp", addr("127.0.1.1:6001")));
    assert!(!test.allows_socket("tcp", addr("127.0.0.1:6002")));
}

#[test]
fn for_component_reports_bad_expansions() {
    let text = APP.replace("{ default = \"api.example.com\" }", "{ default = \"a/b\" }");
    let (m, v) = app(&text);
    let e = format!(
        "{:#}",
        AllowedHosts::for_component(&m, &v, "worker").unwrap_err()
    );
    assert!(
        e.contains("[component.worker] allowed_outbound_hosts \"https://{{ api_host }}:8443\"")
            && e.contains("expands to \"https://a/b:8443\""),
        "{e}"
    );
}

#[test]
fn chaining_requirement_only_for_http_components() {
    let (m, _) = app(APP);
    assert!(requires_service_chaining(m.component("web").unwrap()));
    assert!(!requires_service_chaining(m.component("worker").unwrap()));
    check_service_chaining(&m).unwrap();

    let text = APP.replace(
        "allowed_outbound_hosts = [\"https://{{ api_host }}:8443\"]",
        "allowed_outbound_hosts = [\"http://backend.spin.internal\"]",
    );
    let (m, _) = app(&text);
    let e = check_service_chaining(&m).unwrap_err().to_string();
    assert!(
        e.contains("local_service_chaining")
            && e.contains("component \"worker\"")
            && e.contains("[[trigger.redis]]"),
        "{e}"
    );

    // A component run by both HTTP and Redis triggers may not chain either.
    let text = APP.replace("component = \"worker\"", "component = \"web\"");
    let (m, _) = app(&text);
    let e = check_service_chaining(&m).unwrap_err().to_string();
    assert!(e.contains("component \"web\""), "{e}");
}
