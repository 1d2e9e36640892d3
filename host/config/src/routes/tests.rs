use super::*;

fn router(routes: &[(&str, &str)]) -> Router {
    let (r, _) = build(routes);
    r
}

fn build(routes: &[(&str, &str)]) -> (Router, Vec<DuplicateRoute>) {
    let owned: Vec<(String, HttpRoute)> = routes
        .iter()
        .map(|(c, r)| (c.to_string(), HttpRoute::Path(r.to_string())))
        .collect();
    Router::build(owned.iter().map(|(c, r)| (c.as_str(), r))).unwrap()
}

fn component(r: &Router, path: &str) -> Option<String> {
    r.route(path).map(|m| m.component_id)
}

#[test]
fn exact_routes() {
    let r = router(&[("foo", "/foo"), ("foobar", "/foo/bar")]);
    assert_eq!(component(&r, "/foo").as_deref(), Some("foo"));
    assert_eq!(component(&r, "/foo/").as_deref(), Some("foo"));
    assert_eq!(component(&r, "/foo/bar").as_deref(), Some("foobar"));
    assert_eq!(component(&r, "/foobar"), None);
    assert_eq!(component(&r, "/foo/bar/baz"), None);
    assert_eq!(component(&r, "/"), None);
    let m = r.route("/foo").unwrap();
    assert_eq!(m.path_info, "");
    assert_eq!(m.matched_route, "/foo");
    assert_eq!(m.component_route, "/foo");
}

#[test]
fn wildcard_matches_prefix_and_below() {
    for pattern in ["/test/...", "/test/*"] {
        let r = router(&[("c", pattern)]);
        for (path, info) in [
            ("/test", ""),
            ("/test/", "/"),
            ("/test/hello", "/hello"),
            ("/test/hello/", "/hello/"),
            ("/test/a/b/c", "/a/b/c"),
        ] {
            let m = r
                .route(path)
                .unwrap_or_else(|| panic!("{pattern} should match {path}"));
            assert_eq!(m.path_info, info, "{pattern} {path}");
        }
        assert_eq!(component(&r, "/testing"), None, "{pattern}");
        assert_eq!(component(&r, "/other"), None);
    }
}

#[test]
fn root_wildcard_matches_everything() {
    let r = router(&[("all", "/...")]);
    assert_eq!(r.route("/").unwrap().path_info, "/");
    assert_eq!(r.route("/foo/bar").unwrap().path_info, "/foo/bar");
    assert_eq!(r.route("/abc/").unwrap().path_info, "/abc/");
    let m = r.route("/x").unwrap();
    assert_eq!(m.matched_route, "/...");
    assert_eq!(m.raw_route, "/...");
    assert_eq!(m.component_route, "");
}

#[test]
fn headers_for_a_wildcard_route() {
    let r = router(&[("orders", "/orders/...")]);
    let m = r.route("/orders/42/items").unwrap();
    assert_eq!(
        m,
        RouteMatch {
            component_id: "orders".into(),
            matched_route: "/orders/...".into(),
            raw_route: "/orders/...".into(),
            component_route: "/orders".into(),
            path_info: "/42/items".into(),
            params: vec![],
        }
    );
}

#[test]
fn exact_beats_wildcard_and_longest_prefix_wins() {
    let r = router(&[("wild", "/..."), ("one", "/one")]);
    assert_eq!(component(&r, "/one").as_deref(), Some("one"));
    assert_eq!(component(&r, "/one/x").as_deref(), Some("wild"));

    let r = router(&[("exact", "/foo"), ("wild", "/foo/...")]);
    assert_eq!(component(&r, "/foo").as_deref(), Some("exact"));
    assert_eq!(component(&r, "/foo/x").as_deref(), Some("wild"));
    let r = router(&[("wild", "/foo/..."), ("exact", "/foo")]);
    assert_eq!(component(&r, "/foo").as_deref(), Some("exact"));

    let routes = [
        ("one", "/one/..."),
        ("two", "/one/two/..."),
        ("three", "/one/two/three/..."),
    ];
    let mut reversed = routes;
    reversed.reverse();
    for order in [routes, reversed] {
        let r = router(&order);
        assert_eq!(
            component(&r, "/one/two/three/four").as_deref(),
            Some("three")
        );
        assert_eq!(component(&r, "/one/two/x").as_deref(), Some("two"));
        assert_eq!(component(&r, "/one/x").as_deref(), Some("one"));
        assert_eq!(r.route("/one/two/three/four").unwrap().path_info, "/four");
    }
}

/// The conformance suite's `request-shape` test (fermyon/conformance-tests): route
/// `/base/:path_segment/:path_end/...`, request `/base/path/end/rest?key=value`.
#[test]
fn request_shape_conformance_route() {
    let r = router(&[("request-shape", "/base/:path_segment/:path_end/...")]);
    let m = r.route("/base/path/end/rest").unwrap();
    assert_eq!(
        m,
        RouteMatch {
            component_id: "request-shape".into(),
            matched_route: "/base/:path_segment/:path_end/...".into(),
            raw_route: "/base/:path_segment/:path_end/...".into(),
            component_route: "/base/:path_segment/:path_end".into(),
            path_info: "/rest".into(),
            params: vec![
                ("path_segment".into(), "path".into()),
                ("path_end".into(), "end".into()),
            ],
        }
    );
    let headers: Vec<(String, &str)> = m.path_match_headers().collect();
    assert_eq!(
        headers,
        [
            ("spin-path-match-path-segment".to_string(), "path"),
            ("spin-path-match-path-end".to_string(), "end"),
        ]
    );
    assert_eq!(
        component(&r, "/base/path"),
        None,
        "both parameters are required"
    );
    assert_eq!(r.route("/base/path/end").unwrap().path_info, "");
}

/// Spin's `trigger-http/src/headers.rs`: `SPIN_PATH_MATCH_<NAME upper-cased>`, then `_` -> `-`
/// and lower case over the whole key.
#[test]
fn path_match_header_names_follow_spin() {
    for (name, header) in [
        ("id", "spin-path-match-id"),
        ("path_segment", "spin-path-match-path-segment"),
        ("path_end", "spin-path-match-path-end"),
        ("userId", "spin-path-match-userid"),
        ("USER_ID", "spin-path-match-user-id"),
        ("a-b", "spin-path-match-a-b"),
        ("_x_", "spin-path-match--x-"),
    ] {
        assert_eq!(path_match_header(name), header, ":{name}");
    }
}

#[test]
fn named_params() {
    let r = router(&[("c", "/1/:two/3")]);
    let m = r.route("/1/2/3").unwrap();
    assert_eq!(m.params, [("two".to_string(), "2".to_string())]);
    assert_eq!(component(&r, "/1/2"), None);
    // As in routefinder, an empty segment between slashes is captured as an empty value.
    assert_eq!(
        r.route("/1//3").unwrap().params,
        [("two".to_string(), String::new())]
    );

    let r = router(&[("c", "/orders/:id/...")]);
    let m = r.route("/orders/7/items/1").unwrap();
    assert_eq!(m.params, [("id".to_string(), "7".to_string())]);
    assert_eq!(m.path_info, "/items/1");
    assert_eq!(m.component_route, "/orders/:id");

    let r = router(&[("c", "/files/:name.json")]);
    let m = r.route("/files/report.json").unwrap();
    assert_eq!(m.params, [("name".to_string(), "report".to_string())]);
    assert_eq!(component(&r, "/files/report.xml"), None);

    let r = router(&[("c", "/:a/:b")]);
    let m = r.route("/x/y").unwrap();
    assert_eq!(
        m.params,
        [
            ("a".to_string(), "x".to_string()),
            ("b".to_string(), "y".to_string())
        ]
    );
}

#[test]
fn literal_beats_param_beats_wildcard() {
    let r = router(&[
        ("wild", "/users/..."),
        ("param", "/users/:id"),
        ("literal", "/users/me"),
    ]);
    assert_eq!(component(&r, "/users/me").as_deref(), Some("literal"));
    assert_eq!(component(&r, "/users/42").as_deref(), Some("param"));
    assert_eq!(component(&r, "/users/42/x").as_deref(), Some("wild"));
    assert_eq!(component(&r, "/users").as_deref(), Some("wild"));
}

#[test]
fn literal_dots_are_part_of_the_text() {
    let r = router(&[("c", "/favicon.ico")]);
    assert!(r.route("/favicon.ico").is_some());
    assert!(r.route("/favicon.icox").is_none());
    assert!(r.route("/favicon").is_none());
}

#[test]
fn duplicates_last_wins_and_are_reported() {
    let (r, dups) = build(&[
        ("root", "/"),
        ("first", "/foo"),
        ("second", "/foo"),
        ("whee", "/whee/..."),
    ]);
    assert_eq!(component(&r, "/foo").as_deref(), Some("second"));
    assert_eq!(
        dups,
        [DuplicateRoute {
            route: "/foo".into(),
            replaced_component: "first".into(),
            effective_component: "second".into(),
        }]
    );
    assert!(dups[0]
        .to_string()
        .contains("route /foo of component first is a duplicate"));
    // Routes keep the position of their first occurrence, as in Spin.
    let listed: Vec<_> = r.routes().collect();
    assert_eq!(
        listed,
        [("/", "root"), ("/foo", "second"), ("/whee/...", "whee")]
    );
}

#[test]
fn private_routes_are_unroutable_but_chainable() {
    let triggers = [
        ("web", HttpRoute::Path("/...".into())),
        ("payment-sim", HttpRoute::Private),
    ];
    let (r, _) = Router::build(triggers.iter().map(|(c, r)| (*c, r))).unwrap();
    assert_eq!(r.routes().count(), 1);
    assert_eq!(component(&r, "/payment-sim").as_deref(), Some("web"));

    let m = r.chained("payment-sim", "/charge/1").unwrap();
    assert_eq!(m.component_id, "payment-sim");
    assert_eq!(m.path_info, "/charge/1");
    assert_eq!(m.matched_route, "/...");
    assert_eq!(m.raw_route, "/...");
    assert!(m.params.is_empty());
    assert!(r.chained("web", "/").is_some());
    assert!(r.chained("not-http", "/").is_none());
}

#[test]
fn reserved_routes() {
    assert!(router(&[("c", "/.well-known/spin/...")]).contains_reserved_route());
    assert!(router(&[("c", "/.well-known/spin/fie")]).contains_reserved_route());
    assert!(!router(&[("c", "/.well-known/spindle/...")]).contains_reserved_route());
    assert!(!router(&[("c", "/.well-known/spin")]).contains_reserved_route());
    assert!(is_well_known("/.well-known/spin/health"));
    assert!(!is_well_known("/.well-known/spinx"));
}

#[test]
fn routes_are_normalised_like_spin() {
    let r = router(&[("c", "api/"), ("d", "/x//y")]);
    let m = r.route("/api").unwrap();
    assert_eq!(m.matched_route, "/api");
    assert_eq!(m.raw_route, "api/");
    assert_eq!(component(&r, "/x/y").as_deref(), Some("d"));
}

#[test]
fn bad_routes_are_errors_naming_the_component() {
    for (route, why) in [
        ("/a/:", "params must be named"),
        ("/a/*rest", "doesn't need a name"),
        ("/a/*/b", "must be the last segment"),
    ] {
        let routes = [HttpRoute::Path(route.into())];
        let e = Router::build(routes.iter().map(|r| ("comp", r)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(route) && e.contains("comp") && e.contains(why),
            "{e}"
        );
    }
}

#[test]
fn mid_route_dots_follow_routefinder() {
    // routefinder glues `.` sections onto the preceding literal, so `/a/.../b` is `/a.../b`.
    let r = router(&[("c", "/a/.../b")]);
    assert!(r.route("/a/.../b").is_none());
    assert!(r.route("/a.../b").is_some());
}

#[test]
fn from_manifest_uses_http_triggers_in_order() {
    let m = Manifest::from_toml_str(
        r#"
spin_manifest_version = 2
[application]
name = "r"
[[trigger.http]]
route = "/a"
component = "one"
[[trigger.http]]
route = "/a"
component = "two"
[[trigger.http]]
route = { private = true }
component = "three"
[component.one]
source = "1.wasm"
[component.two]
source = "2.wasm"
[component.three]
source = "3.wasm"
"#,
    )
    .unwrap();
    let (r, dups) = Router::from_manifest(&m).unwrap();
    assert_eq!(component(&r, "/a").as_deref(), Some("two"));
    assert_eq!(dups.len(), 1);
    assert!(r.chained("three", "/x").is_some());
}
