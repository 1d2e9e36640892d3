//! Spin's runtime configuration file (`spin up --runtime-config-file`), as read by Spin's
//! `spin-runtime-config`, `spin-key-value-spin` and `spin-sqlite` crates:
//!
//! ```toml
//! state_dir = ".spin"                 # optional
//! [key_value_store.cart]
//! type = "spin"
//! path = "data/cart.db"               # relative to this file's directory; no path = in memory
//! [sqlite_database.orders]
//! type = "spin"
//! path = "data/orders.db"             # relative to the working directory (as Spin does)
//! ```
//!
//! - Key-value label `default` is always defined: `<state_dir>/sqlite_key_value.db` unless
//!   configured. SQLite label `default` likewise: `<state_dir>/sqlite_db.db`. Without a state
//!   directory (`state_dir = ""`) both defaults live in memory.
//! - State directory: the CLI's `--state-dir`, else the file's `state_dir` (`""` = none), else
//!   `.spin` next to the manifest. A relative one is relative to the working directory. The log
//!   directory likewise (`log_dir`, default `<state_dir>/logs`).
//! - Unknown top-level keys are an error, as in Spin ("unused runtime config key(s)").
//!
//! This host supports only `type = "spin"` stores. Other store types (`redis`, `azure_cosmos`,
//! `aws_dynamo`, `libsql`) and the Spin sections it does not implement (`variables_provider`,
//! `llm_compute`, `client_tls`, `outbound_networking`) are refused with a "not supported by this
//! host" error. `[outbound_http] connection_pooling` is read as Spin's
//! `factor-outbound-http` reads it (see [`OutboundHttpConfig`]), with its `max_connections`.
//! Other connection limits (`[outbound_redis]`, ...) are accepted and reported in
//! [`RuntimeConfig::warnings`]: this host does not enforce them. Unlike Spin,
//! unknown keys inside a `type = "spin"` table are an error (a typo in `path` would otherwise
//! silently give an in-memory store).

use crate::manifest::Manifest;
use anyhow::{anyhow, bail, Context as _, Result};
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default state directory name, next to the manifest.
pub const DEFAULT_STATE_DIR: &str = ".spin";
/// File of the default key-value store inside the state directory.
pub const DEFAULT_KEY_VALUE_FILE: &str = "sqlite_key_value.db";
/// File of the default SQLite database inside the state directory.
pub const DEFAULT_SQLITE_FILE: &str = "sqlite_db.db";
/// The label that is always defined for both stores.
pub const DEFAULT_LABEL: &str = "default";

/// Where a store keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file (its parent directory may not exist yet; the runtime creates it).
    File(PathBuf),
    /// A fresh in-memory database, lost when the host stops.
    InMemory,
}

/// A `[sqlite_database.<label>]` (or the default database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteDatabase {
    /// Where the database lives.
    pub location: StoreLocation,
    /// `allow_attach_file = true` lets the guest `ATTACH` other files (Spin's option).
    pub allow_attach_file: bool,
}

/// What to resolve a runtime configuration against.
#[derive(Clone, Debug)]
pub struct RuntimeConfigOptions {
    /// The `--runtime-config-file`, if any.
    pub file: Option<PathBuf>,
    /// The directory holding `spin.toml` (default state directory is `<app_dir>/.spin`).
    pub app_dir: PathBuf,
    /// `--state-dir` from the command line (wins over the file's `state_dir`).
    pub state_dir: Option<PathBuf>,
    /// Working directory, against which relative state/log directories and SQLite paths resolve.
    pub cwd: PathBuf,
}

impl RuntimeConfigOptions {
    /// Options for `app_dir` with no file and no `--state-dir`, using the process's working
    /// directory.
    pub fn new(app_dir: impl Into<PathBuf>) -> Result<RuntimeConfigOptions> {
        Ok(RuntimeConfigOptions {
            file: None,
            app_dir: app_dir.into(),
            state_dir: None,
            cwd: std::env::current_dir().context("failed to get the working directory")?,
        })
    }
}

/// The resolved runtime configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// State directory (None: `state_dir = ""`, no state kept on disk).
    pub state_dir: Option<PathBuf>,
    /// Directory for component log files (None: no log files).
    pub log_dir: Option<PathBuf>,
    /// `max_instance_memory` in bytes, if set.
    pub max_instance_memory: Option<u64>,
    /// Key-value stores by label, `default` included.
    pub key_value_stores: IndexMap<String, StoreLocation>,
    /// SQLite databases by label, `default` included.
    pub sqlite_databases: IndexMap<String, SqliteDatabase>,
    /// `[outbound_http]`.
    pub outbound_http: OutboundHttpConfig,
    /// Settings accepted but without effect in this host; worth logging once at start-up.
    pub warnings: Vec<String>,
}

/// `[outbound_http]`, with Spin's defaults: connections are pooled when the section is absent,
/// but a section that omits `connection_pooling` turns pooling off (Spin's field defaults to
/// `false` once the table exists).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundHttpConfig {
    /// Whether idle connections are kept and reused by later requests to the same origin.
    #[serde(default)]
    pub connection_pooling: bool,
    /// The most connections open at once (`0` blocks every connection); none when unset.
    #[serde(default)]
    max_connections: Option<usize>,
    /// The deprecated name of `max_connections`, one less: `0` allowed one connection.
    #[serde(default)]
    max_concurrent_requests: Option<usize>,
}

impl OutboundHttpConfig {
    /// How many outbound connections may be open at once, as Spin counts them: a pooled idle
    /// connection holds its place until it closes, and a request waits for a place within its
    /// connect timeout.
    pub fn max_connections(&self) -> Option<usize> {
        self.max_connections
            .or(self.max_concurrent_requests.map(|n| n.saturating_add(1)))
    }
}

impl Default for OutboundHttpConfig {
    fn default() -> Self {
        Self {
            connection_pooling: true,
            max_connections: None,
            max_concurrent_requests: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinKeyValue {
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinSqlite {
    path: Option<PathBuf>,
    #[serde(default)]
    allow_attach_file: bool,
}

/// Spin sections this host does not implement, with what they are for.
const UNSUPPORTED_SECTIONS: &[(&str, &str)] = &[
    (
        "variables_provider",
        "Vault / Azure Key Vault variable providers",
    ),
    (
        "config_provider",
        "Vault / Azure Key Vault variable providers",
    ),
    ("llm_compute", "Serverless AI"),
    ("client_tls", "client TLS certificates"),
    ("outbound_networking", "outbound connection limits"),
];

/// Spin tuning sections that change no behaviour this host has.
const IGNORED_SECTIONS: &[&str] = &[
    "outbound_redis",
    "outbound_pg",
    "outbound_mysql",
    "outbound_mqtt",
];

impl RuntimeConfig {
    /// Reads `options.file` (if any) and resolves it. Errors name the file.
    pub fn load(options: &RuntimeConfigOptions) -> Result<RuntimeConfig> {
        let Some(file) = &options.file else {
            return Self::resolve(toml::Table::new(), options);
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("failed to read runtime config file {}", file.display()))?;
        Self::from_toml_str(&text, options)
            .with_context(|| format!("invalid runtime config file {}", file.display()))
    }

    /// Parses and resolves runtime-config text (`options.file` only locates relative paths).
    pub fn from_toml_str(text: &str, options: &RuntimeConfigOptions) -> Result<RuntimeConfig> {
        let table: toml::Table = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        Self::resolve(table, options)
    }

    /// Reads each section of `table`, removing it; what is left over is an error.
    fn resolve(mut table: toml::Table, options: &RuntimeConfigOptions) -> Result<RuntimeConfig> {
        let mut warnings = Vec::new();
        let state_dir = take_state_dir(&mut table, options)?;
        let log_dir = take_log_dir(&mut table, options, &state_dir)?;
        let max_instance_memory = take_max_instance_memory(&mut table)?;
        let key_value_stores = take_key_value_stores(&mut table, options, &state_dir)?;
        let sqlite_databases = take_sqlite_databases(&mut table, options, &state_dir)?;
        let outbound_http = take_outbound_http(&mut table, &mut warnings)?;
        refuse_unsupported_sections(&table)?;
        take_ignored_sections(&mut table, &mut warnings);
        refuse_unused_keys(&table)?;
        Ok(RuntimeConfig {
            state_dir,
            log_dir,
            max_instance_memory,
            key_value_stores,
            sqlite_databases,
            outbound_http,
            warnings,
        })
    }

    /// The key-value store with this label, if configured.
    pub fn key_value_store(&self, label: &str) -> Option<&StoreLocation> {
        self.key_value_stores.get(label)
    }

    /// The SQLite database with this label, if configured.
    pub fn sqlite_database(&self, label: &str) -> Option<&SqliteDatabase> {
        self.sqlite_databases.get(label)
    }

    /// Fails, as Spin does at start-up, if a component lists a key-value store or SQLite
    /// database label that is not configured.
    pub fn check_manifest_labels(&self, manifest: &Manifest) -> Result<()> {
        for (id, component) in &manifest.components {
            for label in &component.key_value_stores {
                if !self.key_value_stores.contains_key(label.as_str()) {
                    bail!(
                        "unknown key_value_stores label {:?} for component {:?}: define \
                         [key_value_store.{label}] in the runtime config file",
                        label.as_str(),
                        id.as_str()
                    );
                }
            }
        }
        let missing: Vec<String> = manifest
            .components
            .iter()
            .flat_map(|(id, c)| {
                c.sqlite_databases
                    .iter()
                    .filter(|l| !self.sqlite_databases.contains_key(l.as_str()))
                    .map(move |l| format!("- Component {id} uses database '{l}'"))
            })
            .collect();
        if !missing.is_empty() {
            bail!(
                "One or more components use SQLite databases which are not defined.\n\
                 Check the spelling, or pass a runtime configuration file that defines these \
                 stores.\nDetails:\n{}",
                missing.join("\n")
            );
        }
        Ok(())
    }
}

/// `state_dir`: the CLI's `--state-dir`, else the file's (`""`: none), else `.spin` next to the
/// manifest.
fn take_state_dir(
    table: &mut toml::Table,
    options: &RuntimeConfigOptions,
) -> Result<Option<PathBuf>> {
    Ok(
        match (&options.state_dir, take_string(table, "state_dir")?) {
            (Some(cli), _) => Some(options.cwd.join(cli)),
            (None, Some(s)) if s.is_empty() => None,
            (None, Some(s)) => Some(options.cwd.join(s)),
            (None, None) => Some(options.cwd.join(&options.app_dir).join(DEFAULT_STATE_DIR)),
        },
    )
}

/// `log_dir` (`""`: none), else `logs` in the state directory.
fn take_log_dir(
    table: &mut toml::Table,
    options: &RuntimeConfigOptions,
    state_dir: &Option<PathBuf>,
) -> Result<Option<PathBuf>> {
    Ok(match take_string(table, "log_dir")? {
        Some(s) if s.is_empty() => None,
        Some(s) => Some(options.cwd.join(s)),
        None => state_dir.as_ref().map(|d| d.join("logs")),
    })
}

fn take_max_instance_memory(table: &mut toml::Table) -> Result<Option<u64>> {
    Ok(match table.remove("max_instance_memory") {
        None => None,
        Some(toml::Value::Integer(n)) if n >= 0 => Some(n as u64),
        Some(other) => bail!("max_instance_memory: expected a byte count, found {other}"),
    })
}

/// `[key_value_store.<label>]`, and the `default` store unless the file configures one.
fn take_key_value_stores(
    table: &mut toml::Table,
    options: &RuntimeConfigOptions,
    state_dir: &Option<PathBuf>,
) -> Result<IndexMap<String, StoreLocation>> {
    // Spin: relative key-value paths are relative to the runtime config file's directory.
    let kv_base = options
        .file
        .as_deref()
        .and_then(Path::parent)
        .map(|dir| options.cwd.join(dir));
    let mut key_value_stores = IndexMap::new();
    for (label, config) in take_tables(table, "key_value_store")? {
        let what = format!("[key_value_store.{label}]");
        let config: SpinKeyValue = spin_typed(&what, config)?;
        let location = match (config.path, &kv_base) {
            (None, _) => StoreLocation::InMemory,
            (Some(p), Some(base)) => StoreLocation::File(base.join(p)),
            (Some(p), None) => StoreLocation::File(p),
        };
        key_value_stores.insert(label, location);
    }
    if !key_value_stores.contains_key(DEFAULT_LABEL) {
        let location = in_state_dir(state_dir, DEFAULT_KEY_VALUE_FILE);
        key_value_stores.insert(DEFAULT_LABEL.to_string(), location);
    }
    Ok(key_value_stores)
}

/// `[sqlite_database.<label>]`, and the `default` database unless the file configures one.
fn take_sqlite_databases(
    table: &mut toml::Table,
    options: &RuntimeConfigOptions,
    state_dir: &Option<PathBuf>,
) -> Result<IndexMap<String, SqliteDatabase>> {
    // Spin: relative SQLite paths are relative to the working directory.
    let mut sqlite_databases = IndexMap::new();
    for (label, config) in take_tables(table, "sqlite_database")? {
        let what = format!("[sqlite_database.{label}]");
        let config: SpinSqlite = spin_typed(&what, config)?;
        let location = match config.path {
            None => StoreLocation::InMemory,
            Some(p) => StoreLocation::File(options.cwd.join(p)),
        };
        let database = SqliteDatabase {
            location,
            allow_attach_file: config.allow_attach_file,
        };
        sqlite_databases.insert(label, database);
    }
    if !sqlite_databases.contains_key(DEFAULT_LABEL) {
        let database = SqliteDatabase {
            location: in_state_dir(state_dir, DEFAULT_SQLITE_FILE),
            allow_attach_file: false,
        };
        sqlite_databases.insert(DEFAULT_LABEL.to_string(), database);
    }
    Ok(sqlite_databases)
}

/// `[outbound_http]`; its deprecated `max_concurrent_requests` adds a warning.
fn take_outbound_http(
    table: &mut toml::Table,
    warnings: &mut Vec<String>,
) -> Result<OutboundHttpConfig> {
    Ok(match table.remove("outbound_http") {
        None => OutboundHttpConfig::default(),
        Some(section) => {
            let config: OutboundHttpConfig = section
                .try_into()
                .map_err(|e: toml::de::Error| anyhow!("[outbound_http]: {}", e.message()))?;
            if config.max_connections.is_some() && config.max_concurrent_requests.is_some() {
                bail!("[outbound_http]: cannot set both `max_connections` and `max_concurrent_requests`; use `max_connections` only");
            }
            if config.max_concurrent_requests.is_some() {
                warnings.push(
                    "runtime config [outbound_http] max_concurrent_requests is deprecated; use max_connections (max_connections = 0 blocks every connection, max_concurrent_requests = 0 allowed one)".to_string(),
                );
            }
            config
        }
    })
}

fn refuse_unsupported_sections(table: &toml::Table) -> Result<()> {
    for (key, what) in UNSUPPORTED_SECTIONS {
        if table.contains_key(*key) {
            bail!("{key}: not supported by this host ({what})");
        }
    }
    Ok(())
}

fn take_ignored_sections(table: &mut toml::Table, warnings: &mut Vec<String>) {
    for key in IGNORED_SECTIONS {
        if table.remove(*key).is_some() {
            warnings.push(format!(
                "runtime config [{key}] is accepted but has no effect in this host"
            ));
        }
    }
}

/// Spin refuses a runtime config with keys it did not read.
fn refuse_unused_keys(table: &toml::Table) -> Result<()> {
    if !table.is_empty() {
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        bail!("unused runtime config key(s): {}", keys.join(", "));
    }
    Ok(())
}

fn in_state_dir(state_dir: &Option<PathBuf>, file: &str) -> StoreLocation {
    match state_dir {
        Some(dir) => StoreLocation::File(dir.join(file)),
        None => StoreLocation::InMemory,
    }
}

fn take_string(table: &mut toml::Table, key: &str) -> Result<Option<String>> {
    match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(other) => bail!("{key}: expected a string, found {}", other.type_str()),
    }
}

/// `[key.<label>]` tables, in file order.
fn take_tables(table: &mut toml::Table, key: &str) -> Result<Vec<(String, toml::Table)>> {
    match table.remove(key) {
        None => Ok(Vec::new()),
        Some(toml::Value::Table(labels)) => labels
            .into_iter()
            .map(|(label, v)| match v {
                toml::Value::Table(t) => Ok((label, t)),
                other => bail!(
                    "[{key}.{label}]: expected a table, found {}",
                    other.type_str()
                ),
            })
            .collect(),
        Some(other) => bail!("{key}: expected a table, found {}", other.type_str()),
    }
}

/// Checks `type = "spin"` and parses the rest of the table as `T`.
fn spin_typed<T: serde::de::DeserializeOwned>(what: &str, mut config: toml::Table) -> Result<T> {
    match config.remove("type") {
        Some(toml::Value::String(t)) if t == "spin" => {}
        Some(toml::Value::String(t)) => bail!(
            "{what}: type {t:?} is not supported by this host (only type = \"spin\", an SQLite file)"
        ),
        Some(other) => bail!("{what}: type must be a string, found {}", other.type_str()),
        None => bail!("{what}: missing field `type`"),
    }
    config
        .try_into()
        .map_err(|e: toml::de::Error| anyhow!("{what}: {}", e.message()))
}

#[cfg(test)]
mod tests;
