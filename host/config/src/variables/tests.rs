use super::*;
use std::collections::HashMap;

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "vars"
[variables]
region = { default = "eu" }
api_key = { required = true, secret = true }
greeting = { default = "hello" }
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "web.wasm"
[component.web.variables]
url = "https://{{ region }}.example.com/{{greeting}}"
token = "Bearer {{ api_key }}"
plain = "fixed"
[component.other]
source = "other.wasm"
[component.other.variables]
only_mine = "{{ region }}"
"#;

fn manifest() -> Manifest {
    Manifest::from_toml_str(MANIFEST).unwrap()
}

fn resolve(env: &[(&str, &str)], overrides: &[(&str, &str)]) -> Result<Variables> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Variables::resolve(&manifest(), |k| env.get(k).cloned(), &overrides)
}

#[test]
fn precedence_is_default_then_env_then_cli() {
    let v = resolve(&[("SPIN_VARIABLE_API_KEY", "k1")], &[]).unwrap();
    assert_eq!(v.get("region"), Some("eu"));
    assert_eq!(v.get("api_key"), Some("k1"));

    let v = resolve(
        &[
            ("SPIN_VARIABLE_API_KEY", "k1"),
            ("SPIN_VARIABLE_REGION", "us"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(v.get("region"), Some("us"));

    let v = resolve(
        &[
            ("SPIN_VARIABLE_API_KEY", "k1"),
            ("SPIN_VARIABLE_REGION", "us"),
        ],
        &[("region", "ap"), ("api_key", "k2"), ("region", "last")],
    )
    .unwrap();
    assert_eq!(v.get("region"), Some("last"));
    assert_eq!(v.get("api_key"), Some("k2"));
    assert_eq!(v.get("missing"), None);
}

#[test]
fn lower_case_env_names_are_not_read() {
    let e = resolve(&[("SPIN_VARIABLE_api_key", "x")], &[]).unwrap_err();
    assert!(format!("{e:#}").contains("api_key"));
}

#[test]
fn required_without_value_fails_naming_it() {
    let e = format!("{:#}", resolve(&[], &[]).unwrap_err());
    assert!(
        e.contains("required variable(s) not set: api_key (SPIN_VARIABLE_API_KEY or --variable api_key=...)"),
        "{e}"
    );
}

#[test]
fn unknown_override_is_an_error() {
    let e = format!(
        "{:#}",
        resolve(&[], &[("api_key", "k"), ("regoin", "x")]).unwrap_err()
    );
    assert!(
        e.contains("--variable regoin") && e.contains("no variable \"regoin\""),
        "{e}"
    );
}

#[test]
fn component_values_are_expanded_per_component() {
    let v = resolve(&[("SPIN_VARIABLE_API_KEY", "s3cret")], &[("region", "us")]).unwrap();
    assert_eq!(
        v.component_value("web", "url"),
        Some("https://us.example.com/hello")
    );
    assert_eq!(v.component_value("web", "token"), Some("Bearer s3cret"));
    assert_eq!(v.component_value("web", "plain"), Some("fixed"));
    assert_eq!(v.component_value("other", "only_mine"), Some("us"));
    // A component reads only its own keys, never application variables directly.
    assert_eq!(v.component_value("web", "only_mine"), None);
    assert_eq!(v.component_value("web", "region"), None);
    assert_eq!(v.component_value("nobody", "url"), None);
}

#[test]
fn secrets_are_tracked() {
    let v = resolve(&[("SPIN_VARIABLE_API_KEY", "s3cret")], &[]).unwrap();
    assert!(v.is_secret("api_key"));
    assert!(!v.is_secret("region"));
    assert!(v.component_value_is_secret("web", "token"));
    assert!(!v.component_value_is_secret("web", "url"));
    assert!(!v.component_value_is_secret("web", "nope"));
}

#[test]
fn expand_uses_application_variables() {
    let v = resolve(&[("SPIN_VARIABLE_API_KEY", "k")], &[]).unwrap();
    assert_eq!(
        v.expand("redis://{{ region }}:6379").unwrap(),
        "redis://eu:6379"
    );
    assert_eq!(v.expand("no templates").unwrap(), "no templates");
    let e = format!("{:#}", v.expand("redis://{{ nope }}").unwrap_err());
    assert!(e.contains("unknown variable \"nope\""), "{e}");
}

#[test]
fn names_and_assignments() {
    assert_eq!(env_var_name("api_key"), "SPIN_VARIABLE_API_KEY");
    assert!(check_name("api_key").is_ok());
    assert!(check_name("API_KEY").is_err());
    assert!(check_name("a__b").is_err());
    assert_eq!(
        parse_assignment("greeting=a=b").unwrap(),
        ("greeting".to_string(), "a=b".to_string())
    );
    assert_eq!(
        parse_assignment("x=").unwrap(),
        ("x".to_string(), String::new())
    );
    let e = parse_assignment("novalue").unwrap_err().to_string();
    assert!(e.contains("expected NAME=VALUE"), "{e}");
    let e = parse_assignment("Bad=1").unwrap_err().to_string();
    assert!(e.contains("invalid variable name \"Bad\""), "{e}");
}
