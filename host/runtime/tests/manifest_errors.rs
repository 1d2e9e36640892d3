//! Bad manifests are rejected at start-up with a message naming the problem.

mod support;

use std::time::Duration;

use testkit::Host;

/// Each invalid fixture with the texts its error output must contain (case-insensitive).
const CASES: &[(&str, &[&str])] = &[
    ("bad-toml.toml", &["bad-toml.toml"]),
    ("wrong-version.toml", &["wrong-version.toml", "version"]),
    (
        "unknown-component.toml",
        &["unknown-component.toml", "ghost"],
    ),
    (
        "missing-wasm.toml",
        &["never_built_component.wasm", "build"],
    ),
    ("host-without-scheme.toml", &["example.com:8080"]),
    ("host-with-path.toml", &["example.com/some/path"]),
    ("undeclared-variable.toml", &["undeclared_thing"]),
    ("bad-variable-name.toml", &["BadName"]),
    ("required-with-default.toml", &["both_ways"]),
    ("unknown-kv-store.toml", &["nowhere_store", "probe"]),
    ("unknown-sqlite-db.toml", &["nowhere_db", "probe"]),
    ("redis-without-address.toml", &["redis", "address"]),
    ("does-not-exist.toml", &["does-not-exist.toml"]),
];

#[test]
fn invalid_manifests_are_rejected_with_the_reason() {
    let mut problems = Vec::new();
    for (fixture, expected) in CASES {
        let mut options = support::options(&format!("invalid/{fixture}"));
        options.startup_timeout = Duration::from_secs(60);
        let failure = match Host::try_start(options) {
            Ok(_) => {
                problems.push(format!("{fixture}: the host started"));
                continue;
            }
            Err(failure) => failure,
        };
        if failure.status.is_none_or(|status| status.success()) {
            problems.push(format!("{fixture}: expected a failed exit, {failure}"));
            continue;
        }
        let logs = failure.logs.to_lowercase();
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|text| !logs.contains(&text.to_lowercase()))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{fixture}: output lacks {missing:?}:\n{}",
                failure.logs
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
