//! fermyon:spin/variables@2.0.0: manifest defaults < SPIN_VARIABLE_* < --variable, required
//! variables, templates; and `--env` for the component environment.

mod support;

use serde_json::{json, Value};
use testkit::Host;

fn var(host: &Host, name: &str) -> Value {
    let response = host.get(&format!("/var/{name}"));
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

#[test]
fn values_follow_spin_precedence() {
    let host = Host::start(
        support::options("variables.toml")
            .process_env("SPIN_VARIABLE_FROM_ENV", "from-env")
            .process_env("SPIN_VARIABLE_FROM_CLI", "from-env")
            .variable("from_cli", "from-cli")
            .variable("token", "s3cret"),
    );
    assert_eq!(
        var(&host, "greeting"),
        json!({ "value": "hello" }),
        "manifest default"
    );
    assert_eq!(
        var(&host, "from_env"),
        json!({ "value": "from-env" }),
        "env beats default"
    );
    assert_eq!(
        var(&host, "from_cli"),
        json!({ "value": "from-cli" }),
        "--variable beats env"
    );
    assert_eq!(var(&host, "token"), json!({ "value": "s3cret" }));
    assert_eq!(
        var(&host, "combined"),
        json!({ "value": "x-hello-y" }),
        "template expansion"
    );
    assert_eq!(var(&host, "literal"), json!({ "value": "plain" }));
    assert_eq!(var(&host, "not_declared")["error"], "undefined");
    assert_eq!(var(&host, "Bad-Name")["error"], "invalid-name");
    assert!(
        !host.logs().contains("s3cret"),
        "a secret variable's value must not be logged:\n{}",
        host.logs()
    );
}

#[test]
fn required_variable_from_environment_is_enough() {
    let host = Host::start(
        support::options("variables.toml").process_env("SPIN_VARIABLE_TOKEN", "env-token"),
    );
    assert_eq!(var(&host, "token"), json!({ "value": "env-token" }));
}

#[test]
fn missing_required_variable_stops_start_up() {
    let failure = match Host::try_start(support::options("variables.toml")) {
        Ok(_) => panic!("the host started without the required variable token"),
        Err(failure) => failure,
    };
    assert!(
        failure.status.is_some_and(|status| !status.success()),
        "expected a failed exit: {failure}"
    );
    assert!(
        failure.logs.contains("token"),
        "the error must name the variable: {failure}"
    );
}

#[test]
fn env_flag_sets_component_environment() {
    let host = Host::start(
        support::options("variables.toml")
            .variable("token", "t")
            .env("SHOP_GREETING", "hi there")
            .env("SHOP_EMPTY", ""),
    );
    let response = host.get("/echo");
    assert_eq!(response.status, 200, "{}", response.body);
    let echo = response.json();
    assert_eq!(echo["env"]["SHOP_GREETING"], "hi there", "{echo}");
    assert_eq!(echo["env"]["SHOP_EMPTY"], "", "{echo}");
}
