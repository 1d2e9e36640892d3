//! `/.well-known/spin/*` is answered by the host itself, ahead of a catch-all app route.

mod support;

use testkit::Host;

#[test]
fn well_known_endpoints_come_before_app_routes() {
    let host = Host::start(support::options("catch-all.toml"));

    let health = host.get("/.well-known/spin/health");
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(
        !health.body.contains("\"method\""),
        "health must not reach the catch-all component: {}",
        health.body
    );

    let info = host.get("/.well-known/spin/info");
    assert_eq!(info.status, 200, "{}", info.body);
    assert!(!info.body.contains("\"method\""), "{}", info.body);

    let app = host.get("/.well-known/other");
    assert_eq!(app.status, 200, "{}", app.body);
    assert_eq!(
        app.json()["path"],
        "/.well-known/other",
        "other paths reach the app"
    );
}
