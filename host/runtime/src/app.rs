//! The loaded application: manifest, resolved variables, runtime config, and one pre-instantiated
//! component per `[component.<id>]`, ready to get a fresh `Store` per request or message.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use spin_host_config::allowed_hosts::{check_service_chaining, AllowedHosts};
use spin_host_config::manifest::{Manifest, StoreLabel};
use spin_host_config::runtime_config::{RuntimeConfig, RuntimeConfigOptions, StoreLocation};
use spin_host_config::variables::Variables;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store};

use crate::engine;
use crate::key_value::KeyValueStores;
use crate::outbound_client::NetworkClient;
use crate::outbound_http::{OutboundRules, ServiceChaining};
use crate::sqlite::checkpoint::Checkpointer;
use crate::sqlite::Databases;
use crate::state::{ComponentParts, InstanceState, Shared};
use crate::stdio::{self, LogContext};

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
    /// `--max-instance-memory`: beats the runtime config's `max_instance_memory`, as in Spin.
    pub max_instance_memory: Option<usize>,
}

pub struct App {
    pub manifest: Manifest,
    /// Application and component variables after providers.
    pub variables: Arc<Variables>,
    pub components: HashMap<String, Arc<AppComponent>>,
    _ticker: engine::EpochTicker,
    /// One thread for every database and key-value file of the app.
    _checkpointer: Checkpointer,
}

/// One component, compiled and linked once.
pub struct AppComponent {
    pub id: Arc<str>,
    pub pre: InstancePre<InstanceState>,
    /// What each of its instances is made from.
    parts: ComponentParts,
}

impl App {
    /// Loads, validates and compiles everything; every error names what is wrong.
    pub fn load(options: &AppOptions) -> Result<App> {
        let manifest = Manifest::load(&options.manifest)?;
        let app_dir = app_dir(&options.manifest);
        let variables = Arc::new(Variables::from_env(&manifest, &options.variables)?);
        check_service_chaining(&manifest)?;
        let runtime_config = load_runtime_config(options, &app_dir, &manifest)?;
        let shared = Arc::new(open_shared(options, &runtime_config, variables.clone())?);
        let checkpointer = Checkpointer::start(store_files(&runtime_config))?;
        let paths = component_paths(&manifest, &app_dir, &options.manifest)?;
        let (engine, compiled) = engine::compile(runtime_config.state_dir.as_deref(), &paths)?;
        let components = link_components(
            &manifest,
            &engine,
            &paths,
            compiled,
            &options.env,
            runtime_config.log_dir.as_deref(),
            &shared,
        )?;
        let ticker = engine::start_epoch_ticker(&engine);
        Ok(App {
            manifest,
            variables,
            components,
            _ticker: ticker,
            _checkpointer: checkpointer,
        })
    }

    pub fn component(&self, id: &str) -> Result<&Arc<AppComponent>> {
        self.components
            .get(id)
            .with_context(|| format!("trigger refers to unknown component `{id}`"))
    }

    /// Expands `{{ variable }}` templates in a trigger setting (Redis address or channel).
    pub fn expand(&self, template: &str) -> Result<String> {
        self.variables.expand(template)
    }
}

/// The manifest's directory, against which component sources resolve.
fn app_dir(manifest: &Path) -> PathBuf {
    manifest
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The runtime config, checked against the manifest's labels; logs its warnings and creates its
/// state directory.
fn load_runtime_config(
    options: &AppOptions,
    app_dir: &Path,
    manifest: &Manifest,
) -> Result<RuntimeConfig> {
    let mut rc_options = RuntimeConfigOptions::new(app_dir)?;
    rc_options.file = options.runtime_config_file.clone();
    rc_options.state_dir = options.state_dir.clone();
    let runtime_config = RuntimeConfig::load(&rc_options)?;
    runtime_config.check_manifest_labels(manifest)?;
    for warning in &runtime_config.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(dir) = &runtime_config.state_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    }
    Ok(runtime_config)
}

/// Opens the runtime config's stores, and the client for requests that leave the host.
fn open_shared(
    options: &AppOptions,
    runtime_config: &RuntimeConfig,
    variables: Arc<Variables>,
) -> Result<Shared> {
    Ok(Shared {
        variables,
        key_value: Arc::new(KeyValueStores::open(&runtime_config.key_value_stores)?),
        databases: Arc::new(Databases::new(&runtime_config.sqlite_databases)?),
        redis_connections: Arc::default(),
        network: Arc::new(NetworkClient::new(
            runtime_config.outbound_http.connection_pooling,
            runtime_config.outbound_http.max_connections(),
        )),
        max_memory: options.max_instance_memory.or(runtime_config
            .max_instance_memory
            .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX))),
        timeout: options.instance_timeout,
    })
}

/// The files of the app's key-value stores and databases, for the checkpointer.
fn store_files(runtime_config: &RuntimeConfig) -> Vec<PathBuf> {
    runtime_config
        .key_value_stores
        .values()
        .chain(
            runtime_config
                .sqlite_databases
                .values()
                .map(|d| &d.location),
        )
        .filter_map(|location| match location {
            StoreLocation::File(path) => Some(path.clone()),
            StoreLocation::InMemory => None,
        })
        .collect()
}

/// Each component's Wasm file, which must exist.
fn component_paths(
    manifest: &Manifest,
    app_dir: &Path,
    manifest_path: &Path,
) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for (id, component) in &manifest.components {
        let path = component.source_path(app_dir);
        if !path.is_file() {
            bail!(
                "component `{id}`: {} does not exist; run `shop-host build -f {}` (or cargo build --release --target wasm32-wasip2) first",
                path.display(),
                manifest_path.display()
            );
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Links each compiled component (from `paths`) and gathers what its instances get.
fn link_components(
    manifest: &Manifest,
    engine: &Engine,
    paths: &[PathBuf],
    compiled: Vec<Component>,
    env: &[(String, String)],
    log_dir: Option<&Path>,
    shared: &Arc<Shared>,
) -> Result<HashMap<String, Arc<AppComponent>>> {
    let linker = engine::build_linker(engine)?;
    let mut components = HashMap::new();
    for (((id, component), path), wasm) in manifest.components.iter().zip(paths).zip(compiled) {
        let id = id.as_str();
        let rules = Arc::new(OutboundRules::new(AllowedHosts::for_component(
            manifest,
            &shared.variables,
            id,
        )?));
        let pre = instantiate_pre(&linker, engine, &wasm, id, path)?;
        let log_files = log_files(log_dir, id)?;
        components.insert(
            id.to_string(),
            Arc::new(AppComponent {
                id: id.into(),
                pre,
                parts: ComponentParts {
                    id: id.into(),
                    env: environment(component, env),
                    rules,
                    kv_granted: granted(&component.key_value_stores),
                    sqlite_granted: granted(&component.sqlite_databases),
                    postgres_pools: Arc::default(),
                    log_files,
                    shared: shared.clone(),
                },
            }),
        );
    }
    Ok(components)
}

/// The component linked with the shared linker, its imports this host does not serve stubbed.
fn instantiate_pre(
    linker: &Linker<InstanceState>,
    engine: &Engine,
    wasm: &Component,
    id: &str,
    path: &Path,
) -> Result<InstancePre<InstanceState>> {
    let mut linker = linker.clone();
    engine::stub_unsupported_imports(&mut linker, engine, wasm)?;
    linker
        .instantiate_pre(wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component `{id}` ({}) cannot be linked", path.display()))
}

/// The component's `environment`, then `--env`.
fn environment(
    component: &spin_host_config::manifest::Component,
    env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut environment: Vec<(String, String)> = component
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    environment.extend(env.iter().cloned());
    environment
}

/// The component's stdout and stderr files in `log_dir`, if the app has one.
fn log_files(log_dir: Option<&Path>, id: &str) -> Result<Option<[Arc<Mutex<File>>; 2]>> {
    log_dir
        .map(|dir| {
            stdio::open_log_files(dir, id)
                .with_context(|| format!("cannot open log files of `{id}` in {}", dir.display()))
        })
        .transpose()
}

/// The store labels a component may open.
fn granted(labels: &[StoreLabel]) -> Arc<HashSet<String>> {
    Arc::new(labels.iter().map(|l| l.to_string()).collect())
}

impl AppComponent {
    /// A fresh store for one request or message. `chaining` is given only to HTTP-triggered
    /// instances, the only ones Spin lets reach `*.spin.internal`.
    pub fn new_store(
        &self,
        log: LogContext,
        chaining: Option<Arc<dyn ServiceChaining>>,
    ) -> Store<InstanceState> {
        self.parts.new_store(self.pre.engine(), log, chaining)
    }
}
