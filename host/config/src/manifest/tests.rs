use super::*;

const GOOD: &str = r#"
spin_manifest_version = 2

[application]
name = "shop"
version = "0.1.0"
authors = ["Shop Team <team@example.com>"]
description = "Event-driven shop"

[application.trigger.redis]
address = "redis://{{ redis_host }}:6379"

[variables]
redis_host = { default = "127.0.0.1" }
api_key = { required = true, secret = true }

[[trigger.http]]
route = "/orders/..."
component = "orders"

[[trigger.http]]
route = { private = true }
component = "payment-sim"
executor = { type = "spin" }

[[trigger.redis]]
channel = "shop.events"
component = "orders"

[[trigger.redis]]
channel = "billing"
component = "billing"
address = "redis://other:6380"

[component.orders]
source = "target/wasm32-wasip2/release/orders.wasm"
allowed_outbound_hosts = ["http://payment-sim.spin.internal"]
key_value_stores = ["default"]
sqlite_databases = ["default", "orders_db"]
environment = { RUST_LOG = "info" }
files = ["static/*.html", { source = "assets", destination = "/" }]
exclude_files = ["assets/secret"]
[component.orders.variables]
payment_url = "http://payment-sim.spin.internal"
key = "{{ api_key }}"
[component.orders.build]
command = "cargo build --release --target wasm32-wasip2 -p orders"
workdir = "functions/orders"
watch = ["src/**/*.rs"]

[component.payment-sim]
source = "payment_sim.wasm"

[component.billing]
source = "billing.wasm"
[component.billing.build]
command = ["echo one", "echo two"]
"#;

fn err(text: &str) -> String {
    format!("{:#}", Manifest::from_toml_str(text).unwrap_err())
}

/// GOOD with `from` replaced by `to`, asserting that the replacement happened.
fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "fixture lacks {from:?}");
    GOOD.replacen(from, to, 1)
}

#[test]
fn parses_a_full_manifest() {
    let m = Manifest::from_toml_str(GOOD).unwrap();
    assert_eq!(m.application.name, "shop");
    assert_eq!(m.application.version, "0.1.0");
    assert_eq!(
        m.application.trigger.redis.as_ref().unwrap().address,
        "redis://{{ redis_host }}:6379"
    );
    assert!(m.variables["api_key"].secret && m.variables["api_key"].required);
    assert_eq!(
        m.variables["redis_host"].default.as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(m.triggers.http.len(), 2);
    assert_eq!(
        m.triggers.http[0].route,
        HttpRoute::Path("/orders/...".into())
    );
    assert_eq!(m.triggers.http[0].component_id(), "orders");
    assert_eq!(m.triggers.http[1].route, HttpRoute::Private);
    assert_eq!(m.triggers.http[1].executor, Some(HttpExecutor::Http));
    assert_eq!(
        m.triggers.redis[1].address.as_deref(),
        Some("redis://other:6380")
    );
    let ids: Vec<&str> = m.components.keys().map(|k| k.as_str()).collect();
    assert_eq!(ids, ["orders", "payment-sim", "billing"]);
    let orders = m.component("orders").unwrap();
    assert_eq!(orders.sqlite_databases[1].as_str(), "orders_db");
    assert_eq!(orders.variables["key"], "{{ api_key }}");
    assert_eq!(orders.environment["RUST_LOG"], "info");
    assert_eq!(
        orders.files,
        [
            FileMount::Pattern("static/*.html".into()),
            FileMount::Placement {
                source: "assets".into(),
                destination: "/".into()
            }
        ]
    );
    let app_dir = Path::new("/app");
    assert_eq!(
        orders.source_path(app_dir),
        Path::new("/app/target/wasm32-wasip2/release/orders.wasm")
    );
    let build = orders.build.as_ref().unwrap();
    assert_eq!(build.workdir(app_dir), Path::new("/app/functions/orders"));
    assert_eq!(build.commands().len(), 1);
    let billing = m.component("billing").unwrap().build.as_ref().unwrap();
    assert_eq!(billing.commands(), ["echo one", "echo two"]);
    assert_eq!(billing.workdir(app_dir), app_dir);
}

#[test]
fn reports_trigger_types_per_component() {
    let m = Manifest::from_toml_str(GOOD).unwrap();
    assert_eq!(
        m.trigger_types_of("orders"),
        [TriggerType::Http, TriggerType::Redis]
    );
    assert_eq!(m.trigger_types_of("payment-sim"), [TriggerType::Http]);
    assert_eq!(m.trigger_types_of("billing"), [TriggerType::Redis]);
    assert!(m.trigger_types_of("nobody").is_empty());
    assert_eq!(TriggerType::Redis.as_str(), "redis");
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("spin-host-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spin.toml");
    std::fs::write(
        &path,
        edit("[component.billing]\n", "[component.billing]\nsourc = 1\n"),
    )
    .unwrap();
    let e = format!("{:#}", Manifest::load(&path).unwrap_err());
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("unknown field `sourc`"), "{e}");
    let missing = format!("{:#}", Manifest::load(&dir.join("nope.toml")).unwrap_err());
    assert!(
        missing.contains("failed to read manifest") && missing.contains("nope.toml"),
        "{missing}"
    );
    std::fs::write(&path, GOOD).unwrap();
    assert!(Manifest::load(&path).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rejects_bad_versions() {
    let e = err(&edit(
        "spin_manifest_version = 2",
        "spin_manifest_version = \"1\"",
    ));
    assert!(e.contains("\"1\" is not supported by this host"), "{e}");
    let e = err(&edit(
        "spin_manifest_version = 2",
        "spin_manifest_version = 3",
    ));
    assert!(e.contains("invalid manifest version: 3"), "{e}");
    let e = err("");
    assert!(e.contains("missing field `spin_manifest_version`"), "{e}");
    let e = err("spin_manifest_version = 2\n[application\n");
    assert!(e.contains("TOML parse error at line 2"), "{e}");
}

#[test]
fn rejects_unknown_keys_with_location() {
    let e = err(&edit(
        "name = \"shop\"",
        "name = \"shop\"\ncolour = \"red\"",
    ));
    assert!(e.contains("unknown field `colour`"), "{e}");
    assert!(e.contains("line 6"), "{e}");
    let e = err(&edit(
        "[[trigger.redis]]\nchannel = \"billing\"",
        "[[trigger.cron]]\nchannel = \"billing\"",
    ));
    assert!(e.contains("unknown field `cron`"), "{e}");
    let e = err(&edit(
        "component = \"payment-sim\"",
        "component = \"payment-sim\"\nroutes = 1",
    ));
    assert!(e.contains("unknown field `routes`"), "{e}");
    let e = err(&edit(
        "[application.trigger.redis]",
        "[application.trigger.redis]\nport = 1",
    ));
    assert!(e.contains("unknown field `port`"), "{e}");
}

#[test]
fn rejects_bad_ids_and_names() {
    let e = err(&edit("[component.billing]", "[component.bad_id]"));
    assert!(e.contains("bad_id") && e.contains("not '_'"), "{e}");
    let e = err(&edit("component = \"billing\"", "component = \"1-2-3\""));
    assert!(
        e.contains("\"1-2-3\"") && e.contains("start with an ASCII letter"),
        "{e}"
    );
    let e = err(&edit("redis_host = {", "\"bad+name\" = {"));
    assert!(e.contains("bad+name") && e.contains("got '+'"), "{e}");
    let e = err(&edit("payment_url =", "PaymentUrl ="));
    assert!(e.contains("PaymentUrl"), "{e}");
    let e = err(&edit(
        "key_value_stores = [\"default\"]",
        "key_value_stores = [\"de fault\"]",
    ));
    assert!(e.contains("kebab-case or snake_case"), "{e}");
}

#[test]
fn rejects_missing_components() {
    let e = err(&edit("component = \"billing\"", "component = \"biling\""));
    assert!(
        e.contains("[[trigger.redis]] #2 (channel \"billing\")")
            && e.contains("component \"biling\" does not exist"),
        "{e}"
    );
    let e = err(&edit(
        "route = \"/orders/...\"\ncomponent = \"orders\"",
        "route = \"/orders/...\"\ncomponent = \"order\"",
    ));
    assert!(
        e.contains("[[trigger.http]] #1 (route \"/orders/...\")") && e.contains("\"order\""),
        "{e}"
    );
    let e = err(&edit(
        "route = \"/orders/...\"\ncomponent = \"orders\"",
        "route = \"/orders/...\"",
    ));
    assert!(e.contains("missing field `component`"), "{e}");
}

#[test]
fn rejects_bad_routes() {
    let e = err(&edit(
        "route = { private = true }",
        "route = { private = false }",
    ));
    assert!(
        e.contains("route must be a string pattern or '{ private = true }'"),
        "{e}"
    );
    let e = err(&edit("route = { private = true }", "route = 5"));
    assert!(e.contains("found integer"), "{e}");
    let e = err(&edit(
        "route = { private = true }",
        "route = { private = true, x = 1 }",
    ));
    assert!(e.contains("unknown key `x`"), "{e}");
}

#[test]
fn rejects_unsupported_features_clearly() {
    let cases = [
        (
            edit(
                "source = \"billing.wasm\"",
                "source = { url = \"https://x/b.wasm\", digest = \"sha256:0\" }",
            ),
            "URL and registry component sources are not supported by this host",
        ),
        (
            edit(
                "source = \"billing.wasm\"",
                "source = { registry = \"ttl.sh\", package = \"a:b\", version = \"1\" }",
            ),
            "URL and registry component sources are not supported by this host",
        ),
        (
            edit(
                "component = \"billing\"",
                "component = { source = \"x.wasm\" }",
            ),
            "inline components are not supported by this host",
        ),
        (
            edit(
                "executor = { type = \"spin\" }",
                "executor = { type = \"wagi\" }",
            ),
            "executor type \"wagi\" is not supported",
        ),
        (
            edit(
                "component = \"payment-sim\"\n",
                "static_response = { body = \"hi\" }\n",
            ),
            "static_response is not supported",
        ),
        (
            edit(
                "source = \"billing.wasm\"",
                "source = \"billing.wasm\"\nai_models = [\"llama2-chat\"]",
            ),
            "[component.billing] ai_models: not supported by this host",
        ),
        (
            edit(
                "source = \"billing.wasm\"",
                "source = \"billing.wasm\"\nallowed_http_hosts = [\"x.com\"]",
            ),
            "[component.billing] allowed_http_hosts",
        ),
        (
            edit(
                "source = \"billing.wasm\"",
                "source = \"billing.wasm\"\ndependencies = { \"a:b\" = \"1.0\" }",
            ),
            "[component.billing] dependencies",
        ),
        (
            edit(
                "source = \"billing.wasm\"",
                "source = \"billing.wasm\"\nprofile.debug.source = \"d.wasm\"",
            ),
            "[component.billing] profile",
        ),
    ];
    for (text, expected) in cases {
        let e = err(&text);
        assert!(e.contains(expected), "expected {expected:?} in: {e}");
    }
}

#[test]
fn rejects_bad_variables_and_missing_redis_address() {
    let e = err(&edit(
        "{ default = \"127.0.0.1\" }",
        "{ default = \"x\", required = true }",
    ));
    assert!(
        e.contains("[variables] redis_host: must be `required` OR have a `default`"),
        "{e}"
    );
    let e = err(&edit(
        "{ default = \"127.0.0.1\" }",
        "{ description = \"nothing\" }",
    ));
    assert!(e.contains("[variables] redis_host"), "{e}");
    let e = err(&edit(
        "[application.trigger.redis]\naddress = \"redis://{{ redis_host }}:6379\"\n",
        "",
    ));
    assert!(
        e.contains("[[trigger.redis]] #1 (channel \"shop.events\"): no Redis address"),
        "{e}"
    );
}

#[test]
fn requires_trigger_table_like_spin() {
    let e = err("spin_manifest_version = 2\n[application]\nname = \"x\"\n");
    assert!(e.contains("missing field `trigger`"), "{e}");
}

#[test]
fn rejects_templates_naming_unknown_variables() {
    let e = err(&edit("key = \"{{ api_key }}\"", "key = \"{{ api_kee }}\""));
    assert!(
        e.contains("[component.orders.variables] key")
            && e.contains("unknown variable \"api_kee\""),
        "{e}"
    );
    let e = err(&edit("{{ redis_host }}", "{{ redis_hots }}"));
    assert!(
        e.contains("[application.trigger.redis] address") && e.contains("\"redis_hots\""),
        "{e}"
    );
    let e = err(&edit("channel = \"billing\"", "channel = \"{{ chan }}\""));
    assert!(
        e.contains("[[trigger.redis]] #2 (channel \"{{ chan }}\"): channel")
            && e.contains("\"chan\""),
        "{e}"
    );
    let e = err(&edit(
        "address = \"redis://other:6380\"",
        "address = \"redis://{{ other }}\"",
    ));
    assert!(
        e.contains("#2") && e.contains("address") && e.contains("\"other\""),
        "{e}"
    );
    let e = err(&edit(
        "allowed_outbound_hosts = [\"http://payment-sim.spin.internal\"]",
        "allowed_outbound_hosts = [\"https://{{ host }}\"]",
    ));
    assert!(
        e.contains("[component.orders] allowed_outbound_hosts") && e.contains("\"host\""),
        "{e}"
    );
    let e = err(&edit("key = \"{{ api_key }}\"", "key = \"{{ api_key\""));
    assert!(e.contains("unmatched '{{'"), "{e}");
}
