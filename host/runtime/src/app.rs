//! The loaded application: manifest, resolved variables, runtime config, and one pre-instantiated
//! component per `[component.<id>]`, ready to get a fresh `Store` per request or message.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use spin_host_config::manifest::{Manifest, TriggerType};
use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::engine;
use crate::key_value::{KeyValueState, KeyValueStores};
use crate::outbound_http::{OutboundHttp, OutboundRules, ServiceChaining};
use crate::redis_outbound::RedisState;
use crate::sqlite::{Databases, SqliteState};
use crate::state::InstanceState;
use crate::stdio::{LogContext, LogStream};
use crate::variables::{ComponentVariables, VariablesState};

/// What `shop-host up` was asked to run.
#[derive(Clone, Debug)]
pub struct AppOptions {
    pub manifest: PathBuf,
    pub runtime_config_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// `--env K=V`: guest environment for every component.
    pub env: Vec<(String, String)>,
    /// `--variable K=V`: highest-priority variable values.
    pub variables: Vec<(String, String)>,
    /// Longest a single request or message may run before its instance is interrupted.
    pub instance_timeout: Duration,
}

pub struct App {
    pub manifest: Manifest,
    pub app_dir: PathBuf,
    pub state_dir: PathBuf,
    pub engine: Engine,
    /// Application variables after providers (for trigger addresses and channels).
    pub variables: HashMap<String, String>,
    pub components: HashMap<String, Arc<AppComponent>>,
    _ticker: engine::EpochTicker,
}

/// One component, compiled and linked once.
pub struct AppComponent {
    pub id: Arc<str>,
    pub pre: InstancePre<InstanceState>,
    env: Vec<(String, String)>,
    rules: Arc<OutboundRules>,
    variables: ComponentVariables,
    key_value: Arc<KeyValueStores>,
    kv_granted: Arc<HashSet<String>>,
    databases: Arc<Databases>,
    sqlite_granted: Arc<HashSet<String>>,
    timeout: Duration,
}

impl App {
    /// Loads, validates and compiles everything; every error names what is wrong.
    pub fn load(options: &AppOptions) -> Result<App> {
        let manifest = Manifest::load(&options.manifest)?;
        let app_dir = options
            .manifest
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| app_dir.join(".spin"));
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;

        let variables = resolve_variables(&manifest, &options.variables)?;
        check_service_chaining(&manifest)?;

        let stores =
            crate::runtime_config::load(options.runtime_config_file.as_deref(), &state_dir)?;
        let key_value = Arc::new(KeyValueStores::open(&state_dir, &stores.key_value)?);
        let databases = Arc::new(Databases::new(&state_dir, &stores.sqlite)?);

        let engine = engine::build_engine(&state_dir)?;
        let linker = engine::build_linker(&engine)?;
        let mut components = HashMap::new();
        for (id, component) in &manifest.components {
            let id_str = id.as_str();
            let kv_labels: Vec<String> = component
                .key_value_stores
                .iter()
                .map(|l| l.to_string())
                .collect();
            let sqlite_labels: Vec<String> = component
                .sqlite_databases
                .iter()
                .map(|l| l.to_string())
                .collect();
            key_value.check_grants(id_str, &kv_labels)?;
            databases.check_grants(id_str, &sqlite_labels)?;
            let rules = Arc::new(OutboundRules::new(crate::runtime_config::allowed_hosts(
                id_str,
                &component.allowed_outbound_hosts,
                &variables,
            )?));
            let component_variables =
                expand_component_variables(id_str, &component.variables, &variables)?;

            let path = component.source_path(&app_dir);
            if !path.is_file() {
                bail!(
                    "component `{id_str}`: {} does not exist; run `shop-host build -f {}` (or cargo build --release --target wasm32-wasip2) first",
                    path.display(),
                    options.manifest.display()
                );
            }
            let wasm = engine::load_component(&engine, &path)?;
            let mut linker = linker.clone();
            engine::stub_unsupported_imports(&mut linker, &engine, &wasm)?;
            let pre = linker
                .instantiate_pre(&wasm)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("component `{id_str}` ({}) cannot be linked", path.display())
                })?;
            let mut env: Vec<(String, String)> = component
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            env.extend(options.env.iter().cloned());
            components.insert(
                id_str.to_string(),
                Arc::new(AppComponent {
                    id: id_str.into(),
                    pre,
                    env,
                    rules,
                    variables: Arc::new(component_variables),
                    key_value: key_value.clone(),
                    kv_granted: Arc::new(kv_labels.into_iter().collect()),
                    databases: databases.clone(),
                    sqlite_granted: Arc::new(sqlite_labels.into_iter().collect()),
                    timeout: options.instance_timeout,
                }),
            );
        }
        let ticker = engine::start_epoch_ticker(&engine);
        Ok(App {
            manifest,
            app_dir,
            state_dir,
            engine,
            variables,
            components,
            _ticker: ticker,
        })
    }

    pub fn component(&self, id: &str) -> Result<&Arc<AppComponent>> {
        self.components
            .get(id)
            .with_context(|| format!("trigger refers to unknown component `{id}`"))
    }

    /// Expands `{{ variable }}` templates in a trigger setting (Redis address or channel).
    pub fn expand(&self, template: &str) -> Result<String> {
        crate::runtime_config::expand(template, &self.variables)
    }
}

impl AppComponent {
    /// A fresh store for one request or message. `chaining` is given only to HTTP-triggered
    /// instances, the only ones Spin lets reach `*.spin.internal`.
    pub fn new_store(
        &self,
        log: LogContext,
        chaining: Option<Arc<dyn ServiceChaining>>,
    ) -> Store<InstanceState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogStream::new(log.clone(), "stdout"))
            .stderr(LogStream::new(log, "stderr"))
            .envs(&self.env);
        let state = InstanceState {
            table: wasmtime::component::ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound_http: OutboundHttp::new(self.id.clone(), self.rules.clone(), chaining),
            key_value: KeyValueState::new(self.key_value.clone(), self.kv_granted.clone()),
            sqlite: SqliteState::new(self.databases.clone(), self.sqlite_granted.clone()),
            redis: RedisState::new(self.rules.clone()),
            variables: VariablesState::new(self.id.clone(), self.variables.clone()),
        };
        let mut store = Store::new(self.pre.engine(), state);
        engine::set_deadline(&mut store, self.timeout);
        store
    }
}

/// Refuses, as Spin does, an app whose non-HTTP-triggered component asks for service chaining.
fn check_service_chaining(manifest: &Manifest) -> Result<()> {
    for (id, component) in &manifest.components {
        let chains = component
            .allowed_outbound_hosts
            .iter()
            .any(|host| host.contains(crate::outbound_http::CHAINING_SUFFIX));
        let triggers = manifest.trigger_types_of(id.as_str());
        if let Some(other) = triggers
            .iter()
            .find(|t| **t != TriggerType::Http)
            .filter(|_| chains)
        {
            bail!(
                "component `{id}` allows service chaining (*.spin.internal in allowed_outbound_hosts) but is run by the {} trigger; \
                 only HTTP-triggered components may use service chaining (Spin refuses this app too)",
                other.as_str()
            );
        }
    }
    Ok(())
}

/// Application variables: manifest default < `SPIN_VARIABLE_<NAME>` < `--variable`; a required
/// variable without a value stops start-up, naming it.
fn resolve_variables(
    manifest: &Manifest,
    cli: &[(String, String)],
) -> Result<HashMap<String, String>> {
    let env: HashMap<String, String> = std::env::vars().collect();
    crate::runtime_config::resolve_variables(manifest, &env, cli)
}

fn expand_component_variables(
    component: &str,
    templates: &indexmap::IndexMap<spin_host_config::manifest::VariableName, String>,
    values: &HashMap<String, String>,
) -> Result<HashMap<String, String>> {
    templates
        .iter()
        .map(|(key, template)| {
            let value = crate::runtime_config::expand(template, values)
                .with_context(|| format!("component `{component}` variable `{key}`"))?;
            Ok((key.to_string(), value))
        })
        .collect()
}
