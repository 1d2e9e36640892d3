//! Spin application manifest, version 2 (`spin.toml`), modelled on Spin's `spin-manifest` crate
//! (`schema/v2.rs`).
//!
//! Tables and keys Spin rejects as unknown are rejected here too (`deny_unknown_fields`). Features
//! Spin has but this host does not implement are parsed and then refused by [`Manifest::load`]
//! with a message naming the file, the table and the key, rather than silently ignored:
//! remote/registry component sources, inline trigger components, `static_response`, the Wagi
//! executor, component `dependencies`, `profile`, `ai_models` and the deprecated
//! `allowed_http_hosts`. Trigger types other than `http` and `redis` are unknown keys of
//! `[trigger]`.
//!
//! `files` / `exclude_files` are parsed and exposed ([`Component::files`]); whether they are
//! mounted is the runtime's decision.

mod ids;
mod validate;

pub use ids::{ComponentId, StoreLabel, VariableName};

use anyhow::Context as _;
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The only manifest version this host reads.
pub const MANIFEST_VERSION: i64 = 2;

/// A parsed and validated `spin.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_VERSION`]; checked before the rest is parsed.
    pub spin_manifest_version: i64,
    /// `[application]`
    pub application: Application,
    /// `[variables]`: application variables, in manifest order.
    #[serde(default)]
    pub variables: IndexMap<VariableName, Variable>,
    /// `[[trigger.http]]` and `[[trigger.redis]]`. Required, as in Spin.
    #[serde(rename = "trigger")]
    pub triggers: Triggers,
    /// `[component.<id>]`, in manifest order.
    #[serde(rename = "component", default)]
    pub components: IndexMap<ComponentId, Component>,
}

/// `[application]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Application name (required).
    pub name: String,
    /// Application version (free-form; Spin recommends semver).
    #[serde(default)]
    pub version: String,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
    /// Authors.
    #[serde(default)]
    pub authors: Vec<String>,
    /// `[application.trigger.*]`: application-wide trigger settings.
    #[serde(rename = "trigger", default)]
    pub trigger: ApplicationTriggers,
    /// Target environments (`targets = ["spin-up:3.3"]`). Accepted for compatibility, not checked.
    #[serde(default)]
    pub targets: Vec<String>,
    /// `[application.tool.*]`: settings for other tools; ignored, as Spin does.
    #[serde(default)]
    pub tool: IndexMap<String, toml::Table>,
}

/// `[application.trigger]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationTriggers {
    /// `[application.trigger.redis]`
    pub redis: Option<RedisApplicationConfig>,
}

/// `[application.trigger.redis]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisApplicationConfig {
    /// Default Redis address for `[[trigger.redis]]` entries without their own; may contain
    /// `{{ variable }}` templates.
    pub address: String,
}

/// `[variables.<name>]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Documentation only.
    pub description: Option<String>,
    /// If true, a value must be supplied at run time (environment or `--variable`).
    #[serde(default)]
    pub required: bool,
    /// Value used when no provider supplies one.
    pub default: Option<String>,
    /// If true, the value must never be logged.
    #[serde(default)]
    pub secret: bool,
}

/// `[trigger]`: the trigger types this host runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// `[[trigger.http]]`, in manifest order (order matters for duplicate routes).
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    /// `[[trigger.redis]]`, in manifest order.
    #[serde(default)]
    pub redis: Vec<RedisTrigger>,
}

/// The kinds of trigger this host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TriggerType {
    /// `[[trigger.http]]`
    Http,
    /// `[[trigger.redis]]`
    Redis,
}

impl TriggerType {
    /// The trigger type as written in the manifest (`http`, `redis`).
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::Http => "http",
            TriggerType::Redis => "redis",
        }
    }
}

/// `[[trigger.http]]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    /// Optional trigger id.
    pub id: Option<String>,
    /// The component handling the route.
    pub component: Option<ComponentRef>,
    /// `route = "/x/..."` or `route = { private = true }`.
    pub route: HttpRoute,
    /// `executor = { type = "http" }` (also `"spin"`); Wagi is refused.
    pub executor: Option<HttpExecutor>,
    /// Parsed only to refuse it: this host does not serve static responses.
    pub static_response: Option<toml::Value>,
}

impl HttpTrigger {
    /// The id of the component this trigger runs (always set once the manifest is validated).
    pub fn component_id(&self) -> &str {
        match &self.component {
            Some(ComponentRef::Id(id)) => id.as_str(),
            _ => "",
        }
    }
}

/// `[[trigger.redis]]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTrigger {
    /// Optional trigger id.
    pub id: Option<String>,
    /// The component handling messages on `channel`.
    pub component: ComponentRef,
    /// Channel to subscribe to; may contain `{{ variable }}` templates.
    pub channel: String,
    /// Redis address overriding `[application.trigger.redis] address`; may contain templates.
    pub address: Option<String>,
}

impl RedisTrigger {
    /// The id of the component this trigger runs (always set once the manifest is validated).
    pub fn component_id(&self) -> &str {
        match &self.component {
            ComponentRef::Id(id) => id.as_str(),
            ComponentRef::Inline(_) => "",
        }
    }
}

/// A trigger's `component`: an id, or an inline component table (refused by this host).
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum ComponentRef {
    /// `component = "orders"`
    Id(ComponentId),
    /// `component = { source = "..." }`
    Inline(toml::Table),
}

impl TryFrom<toml::Value> for ComponentRef {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(s) => ComponentId::try_from(s).map(ComponentRef::Id),
            toml::Value::Table(t) => Ok(ComponentRef::Inline(t)),
            other => Err(format!(
                "expected a component id string, found {}",
                other.type_str()
            )),
        }
    }
}

/// An HTTP trigger's `route`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum HttpRoute {
    /// A routable pattern such as `/orders/...` or `/orders/:id`.
    Path(String),
    /// `{ private = true }`: reachable only through service chaining.
    Private,
}

impl TryFrom<toml::Value> for HttpRoute {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, String> {
        const WHAT: &str = "route must be a string pattern or '{ private = true }'";
        match value {
            toml::Value::String(s) => Ok(HttpRoute::Path(s)),
            toml::Value::Table(t) => {
                if let Some(key) = t.keys().find(|k| *k != "private") {
                    return Err(format!("{WHAT}: unknown key `{key}`"));
                }
                match t.get("private") {
                    Some(toml::Value::Boolean(true)) => Ok(HttpRoute::Private),
                    Some(toml::Value::Boolean(false)) => {
                        Err(format!("{WHAT}, found {{ private = false }}"))
                    }
                    _ => Err(WHAT.to_string()),
                }
            }
            other => Err(format!("{WHAT}, found {}", other.type_str())),
        }
    }
}

/// An HTTP trigger's `executor`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HttpExecutor {
    /// `{ type = "http" }` or `{ type = "spin" }`: `wasi:http` / Spin HTTP handler (the default).
    #[serde(alias = "spin")]
    Http,
    /// `{ type = "wagi", ... }`: parsed only to refuse it.
    Wagi(toml::Table),
}

/// `[component.<id>]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Path of the Wasm file, relative to the manifest's directory (see [`Component::source_path`]).
    #[serde(deserialize_with = "local_source")]
    pub source: String,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
    /// Component variables: key -> template over application variables (`"{{ api_host }}"`).
    #[serde(default)]
    pub variables: IndexMap<VariableName, String>,
    /// Environment variables for the guest.
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    /// Files the guest may read (parsed; mounting them is up to the runtime).
    #[serde(default)]
    pub files: Vec<FileMount>,
    /// Glob patterns removed from `files`.
    #[serde(default)]
    pub exclude_files: Vec<String>,
    /// Network destinations the component may reach (`scheme://host[:port]`, templates allowed).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value store labels the component may open.
    #[serde(default)]
    pub key_value_stores: Vec<StoreLabel>,
    /// SQLite database labels the component may open.
    #[serde(default)]
    pub sqlite_databases: Vec<StoreLabel>,
    /// `[component.<id>.build]`, used by `shop-host build`.
    pub build: Option<BuildConfig>,
    /// Target environments. Accepted for compatibility, not checked.
    pub targets: Option<Vec<String>>,
    /// `[component.<id>.tool.*]`: ignored, as Spin does.
    #[serde(default)]
    pub tool: IndexMap<String, toml::Table>,
    /// Refused by this host (deprecated in Spin; use `allowed_outbound_hosts`).
    #[serde(default)]
    pub allowed_http_hosts: Vec<String>,
    /// Refused by this host (no Serverless AI).
    #[serde(default)]
    pub ai_models: Vec<String>,
    /// Refused by this host (no component composition).
    #[serde(default)]
    pub dependencies: toml::Table,
    /// Refused by this host together with `dependencies`.
    pub dependencies_inherit_configuration: Option<bool>,
    /// Refused by this host (no build/run profiles).
    #[serde(default)]
    pub profile: toml::Table,
}

impl Component {
    /// The Wasm file, resolved against the directory holding the manifest.
    pub fn source_path(&self, app_dir: &Path) -> PathBuf {
        app_dir.join(&self.source)
    }
}

/// Accepts only `source = "path.wasm"`; URL and registry sources need downloading, which this
/// host does not do.
fn local_source<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    match toml::Value::deserialize(d)? {
        toml::Value::String(path) if !path.is_empty() => Ok(path),
        toml::Value::String(_) => Err(D::Error::custom("source must not be empty")),
        toml::Value::Table(t) if t.contains_key("url") || t.contains_key("registry") || t.contains_key("package") => {
            Err(D::Error::custom(
                "URL and registry component sources are not supported by this host; \
                 build or download the Wasm file and give its path (source = \"path/to/file.wasm\")",
            ))
        }
        other => Err(D::Error::custom(format!(
            "expected a path to a Wasm file, found {}",
            other.type_str()
        ))),
    }
}

/// One `files` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FileMount {
    /// A glob pattern relative to the manifest directory, mounted at the same path.
    Pattern(String),
    /// `{ source = "dir", destination = "/" }`
    Placement {
        /// Host directory, relative to the manifest directory.
        source: String,
        /// Absolute guest path.
        destination: String,
    },
}

/// `[component.<id>.build]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    /// One command or a list run in order.
    pub command: BuildCommands,
    /// Working directory relative to the manifest directory (default: the manifest directory).
    pub workdir: Option<String>,
    /// Watch globs (for `spin watch`; unused by this host).
    #[serde(default)]
    pub watch: Vec<String>,
}

impl BuildConfig {
    /// The commands to run, in order.
    pub fn commands(&self) -> Vec<&str> {
        match &self.command {
            BuildCommands::Single(c) => vec![c.as_str()],
            BuildCommands::Multiple(cs) => cs.iter().map(String::as_str).collect(),
        }
    }

    /// The directory to run the commands in.
    pub fn workdir(&self, app_dir: &Path) -> PathBuf {
        match &self.workdir {
            Some(w) => app_dir.join(w),
            None => app_dir.to_path_buf(),
        }
    }
}

/// `command = "..."` or `command = ["...", "..."]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum BuildCommands {
    /// A single command line.
    Single(String),
    /// Command lines run left to right.
    Multiple(Vec<String>),
}

impl Manifest {
    /// Reads, parses and validates a manifest. Errors name the file and say which table or key
    /// is wrong and why (TOML errors carry the line and column).
    pub fn load(path: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read manifest {}", path.display()))?;
        Self::from_toml_str(&text).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses and validates manifest text (see [`Manifest::load`]).
    pub fn from_toml_str(text: &str) -> anyhow::Result<Manifest> {
        check_version(text)?;
        let manifest: Manifest = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        validate::validate(&manifest)?;
        Ok(manifest)
    }

    /// The component with this id.
    pub fn component(&self, id: &str) -> Option<&Component> {
        self.components.get(id)
    }

    /// The trigger types that run this component (each at most once; HTTP first). Used for the
    /// service-chaining rule: only HTTP-triggered components may chain.
    pub fn trigger_types_of(&self, component_id: &str) -> Vec<TriggerType> {
        let mut types = Vec::new();
        if self
            .triggers
            .http
            .iter()
            .any(|t| t.component_id() == component_id)
        {
            types.push(TriggerType::Http);
        }
        if self
            .triggers
            .redis
            .iter()
            .any(|t| t.component_id() == component_id)
        {
            types.push(TriggerType::Redis);
        }
        types
    }
}

/// Checks `spin_manifest_version` first, so that a version-1 manifest gets a message about the
/// version rather than about the keys version 1 uses.
fn check_version(text: &str) -> anyhow::Result<()> {
    let table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    match table.get("spin_manifest_version") {
        Some(toml::Value::Integer(MANIFEST_VERSION)) => Ok(()),
        Some(toml::Value::String(s)) if s == "1" => anyhow::bail!(
            "spin_manifest_version \"1\" is not supported by this host: \
             convert the manifest to version 2 (`spin_manifest_version = 2`)"
        ),
        Some(other) => anyhow::bail!(
            "invalid manifest version: {other}; this host reads `spin_manifest_version = 2`"
        ),
        None => anyhow::bail!("missing field `spin_manifest_version` (expected 2)"),
    }
}

#[cfg(test)]
mod tests;
