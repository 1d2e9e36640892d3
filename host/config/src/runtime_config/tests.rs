use super::*;

fn options(file: Option<&str>) -> RuntimeConfigOptions {
    RuntimeConfigOptions {
        file: file.map(PathBuf::from),
        app_dir: PathBuf::from("/app"),
        state_dir: None,
        cwd: PathBuf::from("/work"),
    }
}

fn parse(text: &str) -> Result<RuntimeConfig> {
    RuntimeConfig::from_toml_str(text, &options(Some("/conf/runtime-config.toml")))
}

fn err(text: &str) -> String {
    format!("{:#}", parse(text).unwrap_err())
}

fn file(p: &str) -> StoreLocation {
    StoreLocation::File(PathBuf::from(p))
}

#[test]
fn defaults_without_a_file() {
    let rc = RuntimeConfig::load(&options(None)).unwrap();
    assert_eq!(rc.state_dir, Some(PathBuf::from("/app/.spin")));
    assert_eq!(rc.log_dir, Some(PathBuf::from("/app/.spin/logs")));
    assert_eq!(
        rc.key_value_store("default"),
        Some(&file("/app/.spin/sqlite_key_value.db"))
    );
    assert_eq!(
        rc.sqlite_database("default"),
        Some(&SqliteDatabase {
            location: file("/app/.spin/sqlite_db.db"),
            allow_attach_file: false
        })
    );
    assert_eq!(rc.key_value_store("other"), None);
    assert_eq!(rc.sqlite_database("other"), None);
    assert!(rc.warnings.is_empty());
    assert_eq!(rc.max_instance_memory, None);
}

#[test]
fn relative_app_dir_is_resolved_against_cwd() {
    let mut o = options(None);
    o.app_dir = PathBuf::from("shop");
    let rc = RuntimeConfig::load(&o).unwrap();
    assert_eq!(rc.state_dir, Some(PathBuf::from("/work/shop/.spin")));
}

#[test]
fn labelled_stores_resolve_paths_like_spin() {
    let rc = parse(
        r#"
[key_value_store.cart]
type = "spin"
path = "data/cart.db"
[key_value_store.abs]
type = "spin"
path = "/var/kv.db"
[key_value_store.mem]
type = "spin"
[sqlite_database.orders]
type = "spin"
path = "data/orders.db"
allow_attach_file = true
[sqlite_database.mem]
type = "spin"
"#,
    )
    .unwrap();
    // Key-value: relative to the runtime config file's directory.
    assert_eq!(
        rc.key_value_store("cart"),
        Some(&file("/conf/data/cart.db"))
    );
    assert_eq!(rc.key_value_store("abs"), Some(&file("/var/kv.db")));
    assert_eq!(rc.key_value_store("mem"), Some(&StoreLocation::InMemory));
    assert_eq!(
        rc.key_value_store("default"),
        Some(&file("/app/.spin/sqlite_key_value.db"))
    );
    // SQLite: relative to the working directory.
    let orders = rc.sqlite_database("orders").unwrap();
    assert_eq!(orders.location, file("/work/data/orders.db"));
    assert!(orders.allow_attach_file);
    assert_eq!(
        rc.sqlite_database("mem").unwrap().location,
        StoreLocation::InMemory
    );
    assert_eq!(
        rc.sqlite_database("default").unwrap().location,
        file("/app/.spin/sqlite_db.db")
    );
    let labels: Vec<&str> = rc.key_value_stores.keys().map(String::as_str).collect();
    assert_eq!(labels, ["cart", "abs", "mem", "default"]);
}

#[test]
fn relative_runtime_config_file_is_resolved_against_cwd() {
    let rc = RuntimeConfig::from_toml_str(
        "[key_value_store.cart]\ntype = \"spin\"\npath = \"cart.db\"\n",
        &options(Some("runtime-config.toml")),
    )
    .unwrap();
    assert_eq!(rc.key_value_store("cart"), Some(&file("/work/cart.db")));
}

#[test]
fn default_labels_can_be_overridden() {
    let rc = parse(
        "[key_value_store.default]\ntype = \"spin\"\npath = \"kv.db\"\n\
         [sqlite_database.default]\ntype = \"spin\"\npath = \"db.db\"\n",
    )
    .unwrap();
    assert_eq!(rc.key_value_store("default"), Some(&file("/conf/kv.db")));
    assert_eq!(
        rc.sqlite_database("default").unwrap().location,
        file("/work/db.db")
    );
}

#[test]
fn state_and_log_dirs() {
    let rc = parse("state_dir = \"state\"").unwrap();
    assert_eq!(rc.state_dir, Some(PathBuf::from("/work/state")));
    assert_eq!(rc.log_dir, Some(PathBuf::from("/work/state/logs")));
    assert_eq!(
        rc.key_value_store("default"),
        Some(&file("/work/state/sqlite_key_value.db"))
    );

    let rc = parse("state_dir = \"\"").unwrap();
    assert_eq!(rc.state_dir, None);
    assert_eq!(rc.log_dir, None);
    assert_eq!(
        rc.key_value_store("default"),
        Some(&StoreLocation::InMemory)
    );
    assert_eq!(
        rc.sqlite_database("default").unwrap().location,
        StoreLocation::InMemory
    );

    let mut o = options(Some("/conf/rc.toml"));
    o.state_dir = Some(PathBuf::from("/cli/state"));
    let rc =
        RuntimeConfig::from_toml_str("state_dir = \"ignored\"\nlog_dir = \"logs\"", &o).unwrap();
    assert_eq!(rc.state_dir, Some(PathBuf::from("/cli/state")));
    assert_eq!(rc.log_dir, Some(PathBuf::from("/work/logs")));
    assert_eq!(
        rc.sqlite_database("default").unwrap().location,
        file("/cli/state/sqlite_db.db")
    );

    let rc = parse("log_dir = \"\"\nmax_instance_memory = 1048576").unwrap();
    assert_eq!(rc.log_dir, None);
    assert_eq!(rc.max_instance_memory, Some(1_048_576));
    let e = err("state_dir = 3");
    assert!(
        e.contains("state_dir: expected a string, found integer"),
        "{e}"
    );
    let e = err("max_instance_memory = \"big\"");
    assert!(e.contains("max_instance_memory"), "{e}");
}

#[test]
fn unsupported_types_and_sections_are_refused() {
    let e = err("[key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://localhost\"\n");
    assert!(
        e.contains("[key_value_store.cache]: type \"redis\" is not supported by this host"),
        "{e}"
    );
    let e =
        err("[sqlite_database.remote]\ntype = \"libsql\"\nurl = \"https://x\"\ntoken = \"t\"\n");
    assert!(
        e.contains("[sqlite_database.remote]: type \"libsql\" is not supported by this host"),
        "{e}"
    );
    let e = err("[[variables_provider]]\ntype = \"vault\"\n");
    assert!(
        e.contains("variables_provider: not supported by this host"),
        "{e}"
    );
    let e = err("[llm_compute]\ntype = \"remote_http\"\n");
    assert!(e.contains("llm_compute: not supported"), "{e}");
}

#[test]
fn bad_tables_are_explained() {
    let e = err("[key_value_store.cart]\npath = \"x.db\"\n");
    assert!(
        e.contains("[key_value_store.cart]: missing field `type`"),
        "{e}"
    );
    let e = err("[key_value_store.cart]\ntype = \"spin\"\npth = \"x.db\"\n");
    assert!(
        e.contains("[key_value_store.cart]") && e.contains("unknown field `pth`"),
        "{e}"
    );
    let e = err("[sqlite_database.db]\ntype = \"spin\"\npath = 5\n");
    assert!(e.contains("[sqlite_database.db]"), "{e}");
    let e = err("key_value_store = 1");
    assert!(e.contains("key_value_store: expected a table"), "{e}");
    let e = err("[key_value_store]\ncart = 1");
    assert!(
        e.contains("[key_value_store.cart]: expected a table"),
        "{e}"
    );
    let e = err("[key_value_store.x]\ntype = 1");
    assert!(e.contains("type must be a string"), "{e}");
    let e = err("[key_value_store.x\n");
    assert!(e.contains("TOML parse error"), "{e}");
}

#[test]
fn unknown_keys_are_errors_and_tuning_is_a_warning() {
    let e = err("stat_dir = \"x\"\n[kv_store.a]\ntype = \"spin\"\n");
    assert!(
        e.contains("unused runtime config key(s): stat_dir, kv_store"),
        "{e}"
    );
    let rc = parse("[outbound_http]\nmax_connections = 5\n[outbound_redis]\nmax_connections = 2\n")
        .unwrap();
    assert_eq!(rc.warnings.len(), 1);
    assert!(
        rc.warnings[0].contains("[outbound_redis]"),
        "{:?}",
        rc.warnings
    );
}

#[test]
fn outbound_connections_are_pooled_unless_the_section_says_otherwise() {
    assert!(parse("").unwrap().outbound_http.connection_pooling);
    let on = parse("[outbound_http]\nconnection_pooling = true\n").unwrap();
    assert!(on.outbound_http.connection_pooling);
    assert!(on.warnings.is_empty(), "{:?}", on.warnings);
    // Spin's field defaults to false once the section exists.
    let limits_only = parse("[outbound_http]\nmax_connections = 5\n").unwrap();
    assert!(!limits_only.outbound_http.connection_pooling);
    assert_eq!(limits_only.outbound_http.max_connections(), Some(5));
    assert_eq!(parse("").unwrap().outbound_http.max_connections(), None);
    // The deprecated key counted one connection more, as Spin still honours.
    let old = parse("[outbound_http]\nmax_concurrent_requests = 0\n").unwrap();
    assert_eq!(old.outbound_http.max_connections(), Some(1));
    assert!(old.warnings[0].contains("deprecated"), "{:?}", old.warnings);
    let e = err("[outbound_http]\nmax_connections = 5\nmax_concurrent_requests = 4\n");
    assert!(e.contains("cannot set both"), "{e}");
    let e = err("[outbound_http]\nconnection_pool = true\n");
    assert!(
        e.contains("[outbound_http]") && e.contains("connection_pool"),
        "{e}"
    );
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("spin-host-rc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runtime-config.toml");
    std::fs::write(
        &path,
        "[key_value_store.cart]\ntype = \"spin\"\npath = \"cart.db\"\n",
    )
    .unwrap();
    let mut o = options(None);
    o.file = Some(path.clone());
    let rc = RuntimeConfig::load(&o).unwrap();
    assert_eq!(
        rc.key_value_store("cart"),
        Some(&StoreLocation::File(dir.join("cart.db")))
    );

    std::fs::write(&path, "bogus = 1\n").unwrap();
    let e = format!("{:#}", RuntimeConfig::load(&o).unwrap_err());
    assert!(
        e.contains(&path.display().to_string()) && e.contains("bogus"),
        "{e}"
    );
    o.file = Some(dir.join("missing.toml"));
    let e = format!("{:#}", RuntimeConfig::load(&o).unwrap_err());
    assert!(
        e.contains("failed to read runtime config file") && e.contains("missing.toml"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(RuntimeConfigOptions::new("/app").is_ok());
}

#[test]
fn component_labels_must_be_configured() {
    let manifest = Manifest::from_toml_str(
        r#"
spin_manifest_version = 2
[application]
name = "labels"
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "web.wasm"
key_value_stores = ["default", "cart"]
sqlite_databases = ["default", "orders", "audit"]
"#,
    )
    .unwrap();
    let rc = parse("").unwrap();
    let e = rc.check_manifest_labels(&manifest).unwrap_err().to_string();
    assert!(
        e.contains("unknown key_value_stores label \"cart\" for component \"web\""),
        "{e}"
    );

    let rc = parse("[key_value_store.cart]\ntype = \"spin\"\n").unwrap();
    let e = rc.check_manifest_labels(&manifest).unwrap_err().to_string();
    assert!(
        e.contains("- Component web uses database 'orders'")
            && e.contains("- Component web uses database 'audit'"),
        "{e}"
    );

    let rc = parse(
        "[key_value_store.cart]\ntype = \"spin\"\n[sqlite_database.orders]\ntype = \"spin\"\n\
         [sqlite_database.audit]\ntype = \"spin\"\n",
    )
    .unwrap();
    rc.check_manifest_labels(&manifest).unwrap();
}
