//! The loaded application: manifest, resolved variables, runtime config, and one pre-instantiated
//! component per `[component.<id>]`, ready to get a fresh `Store` per request or message.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spin_host_config::allowed_hosts::{check_service_chaining, AllowedHosts};
use spin_host_config::manifest::Manifest;
use spin_host_config::runtime_config::{RuntimeConfig, RuntimeConfigOptions, StoreLocation};
use spin_host_config::variables::Variables;
use wasmtime::component::InstancePre;
use wasmtime::Store;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::engine;
use crate::key_value::{KeyValueState, KeyValueStores};
use crate::mqtt_outbound::MqttState;
use crate::outbound_client::NetworkClient;
use crate::outbound_http::{OutboundHttp, OutboundRules, ServiceChaining};
use crate::postgres_outbound::{PostgresPools, PostgresState};
use crate::redis_outbound::{RedisState, SharedConnections};
use crate::sqlite::checkpoint::Checkpointer;
use crate::sqlite::{Databases, SqliteState};
use crate::state::InstanceState;
use crate::stdio::{self, LogContext, LogStream};
use crate::variables::VariablesState;

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
    env: Vec<(String, String)>,
    rules: Arc<OutboundRules>,
    variables: Arc<Variables>,
    key_value: Arc<KeyValueStores>,
    kv_granted: Arc<HashSet<String>>,
    databases: Arc<Databases>,
    sqlite_granted: Arc<HashSet<String>>,
    redis_connections: Arc<SharedConnections>,
    /// Outbound PostgreSQL pools of this component (Spin keeps them per component).
    postgres_pools: Arc<PostgresPools>,
    network: Arc<NetworkClient>,
    max_memory: Option<usize>,
    timeout: Duration,
    /// stdout and stderr files in the runtime config's `log_dir`.
    log_files: Option<[Arc<Mutex<File>>; 2]>,
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

        let variables = Arc::new(Variables::from_env(&manifest, &options.variables)?);
        check_service_chaining(&manifest)?;

        let mut rc_options = RuntimeConfigOptions::new(&app_dir)?;
        rc_options.file = options.runtime_config_file.clone();
        rc_options.state_dir = options.state_dir.clone();
        let runtime_config = RuntimeConfig::load(&rc_options)?;
        runtime_config.check_manifest_labels(&manifest)?;
        for warning in &runtime_config.warnings {
            tracing::warn!("{warning}");
        }
        if let Some(dir) = &runtime_config.state_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        }
        let key_value = Arc::new(KeyValueStores::open(&runtime_config.key_value_stores)?);
        let databases = Arc::new(Databases::new(&runtime_config.sqlite_databases)?);
        let files = runtime_config
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
            .collect();
        let checkpointer = Checkpointer::start(files)?;
        let redis_connections = Arc::new(SharedConnections::default());
        let network = Arc::new(NetworkClient::new(
            runtime_config.outbound_http.connection_pooling,
            runtime_config.outbound_http.max_connections(),
        ));
        let max_memory = options.max_instance_memory.or(runtime_config
            .max_instance_memory
            .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX)));

        let mut paths = Vec::new();
        for (id, component) in &manifest.components {
            let path = component.source_path(&app_dir);
            if !path.is_file() {
                bail!(
                    "component `{id}`: {} does not exist; run `shop-host build -f {}` (or cargo build --release --target wasm32-wasip2) first",
                    path.display(),
                    options.manifest.display()
                );
            }
            paths.push(path);
        }
        let (engine, compiled) = engine::compile(runtime_config.state_dir.as_deref(), &paths)?;
        let linker = engine::build_linker(&engine)?;
        let mut components = HashMap::new();
        for (((id, component), path), wasm) in manifest.components.iter().zip(&paths).zip(compiled)
        {
            let id = id.as_str();
            let rules = Arc::new(OutboundRules::new(AllowedHosts::for_component(
                &manifest, &variables, id,
            )?));
            let mut linker = linker.clone();
            engine::stub_unsupported_imports(&mut linker, &engine, &wasm)?;
            let pre = linker
                .instantiate_pre(&wasm)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("component `{id}` ({}) cannot be linked", path.display())
                })?;
            let mut env: Vec<(String, String)> = component
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            env.extend(options.env.iter().cloned());
            let log_files = match &runtime_config.log_dir {
                Some(dir) => Some(stdio::open_log_files(dir, id).with_context(|| {
                    format!("cannot open log files of `{id}` in {}", dir.display())
                })?),
                None => None,
            };
            let labels = |labels: &[spin_host_config::manifest::StoreLabel]| {
                Arc::new(labels.iter().map(|l| l.to_string()).collect::<HashSet<_>>())
            };
            components.insert(
                id.to_string(),
                Arc::new(AppComponent {
                    id: id.into(),
                    pre,
                    env,
                    rules,
                    variables: variables.clone(),
                    key_value: key_value.clone(),
                    kv_granted: labels(&component.key_value_stores),
                    databases: databases.clone(),
                    sqlite_granted: labels(&component.sqlite_databases),
                    redis_connections: redis_connections.clone(),
                    postgres_pools: Arc::default(),
                    network: network.clone(),
                    max_memory,
                    timeout: options.instance_timeout,
                    log_files,
                }),
            );
        }
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

impl AppComponent {
    /// A fresh store for one request or message. `chaining` is given only to HTTP-triggered
    /// instances, the only ones Spin lets reach `*.spin.internal`.
    pub fn new_store(
        &self,
        log: LogContext,
        chaining: Option<Arc<dyn ServiceChaining>>,
    ) -> Store<InstanceState> {
        let deadline = Instant::now() + self.timeout;
        let mut wasi = WasiCtxBuilder::new();
        let [stdout, stderr] = self.log_files.clone().map_or([None, None], |f| f.map(Some));
        wasi.envs(&self.env);
        if let Some(traceparent) = &log.traceparent {
            // The span the instance runs in, for its logs and what it hands on (OpenTelemetry's
            // environment carrier for trace context; an extension of this host).
            wasi.env("TRACEPARENT", traceparent);
        }
        crate::sockets::configure(&mut wasi, self.id.clone(), self.rules.clone());
        wasi.stdout(LogStream::new(log.clone(), "stdout", stdout))
            .stderr(LogStream::new(log, "stderr", stderr));
        let state = InstanceState {
            table: wasmtime::component::ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound_http: OutboundHttp::new(
                self.id.clone(),
                self.rules.clone(),
                chaining,
                self.network.clone(),
            ),
            key_value: KeyValueState::new(self.key_value.clone(), self.kv_granted.clone()),
            sqlite: SqliteState::new(
                self.databases.clone(),
                self.sqlite_granted.clone(),
                deadline,
            ),
            redis: RedisState::new(self.rules.clone(), self.redis_connections.clone()),
            postgres: PostgresState::new(self.rules.clone(), self.postgres_pools.clone()),
            mqtt: MqttState::new(self.rules.clone()),
            variables: VariablesState::new(self.id.clone(), self.variables.clone()),
            limits: engine::MemoryLimit::new(self.max_memory),
            deadline,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        engine::set_deadline(&mut store, deadline);
        store
    }
}
