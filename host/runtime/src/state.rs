//! The data of one `Store`: a fresh value per request or message, holding each capability's
//! per-instance state (as Spin's per-factor `InstanceState`). The only place that knows the
//! whole: it makes it from what a component's instances are made of (`ComponentParts`), and
//! links every capability's interfaces to its own part of it.

use std::collections::HashSet;
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use spin_host_config::variables::Variables;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::key_value::{self, KeyValueState, KeyValueStores};
use crate::mqtt_outbound::{self, MqttState};
use crate::outbound_client::NetworkClient;
use crate::outbound_http::{OutboundHttp, OutboundRules, ServiceChaining};
use crate::postgres_outbound::{self, PostgresPools, PostgresState};
use crate::redis_outbound::{self, RedisState, SharedConnections};
use crate::sqlite::{self, Databases, SqliteState};
use crate::stdio::{LogContext, LogStream};
use crate::variables::{self, VariablesState};

pub struct InstanceState {
    /// WASI and wasi:http resources.
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub outbound_http: OutboundHttp,
    pub key_value: KeyValueState,
    pub sqlite: SqliteState,
    pub redis: RedisState,
    pub postgres: PostgresState,
    pub mqtt: MqttState,
    pub variables: VariablesState,
    /// Memory limit (`max_instance_memory`).
    pub limits: crate::engine::MemoryLimit,
    /// When the instance must be done (`--instance-timeout-secs` after its store was made): the
    /// epoch callback traps Wasm past it, the triggers drop the guest call at it, and SQLite
    /// interrupts a statement still running then.
    pub deadline: Instant,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound_http,
        }
    }
}

/// Links WASI, wasi:http and Spin's interfaces, each capability's to its state in the store.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    key_value::add_to_linker(linker, |state| &mut state.key_value)?;
    sqlite::add_to_linker(linker, |state| &mut state.sqlite)?;
    redis_outbound::add_to_linker(linker, |state| &mut state.redis)?;
    postgres_outbound::add_to_linker(linker, |state| &mut state.postgres)?;
    mqtt_outbound::add_to_linker(linker, |state| &mut state.mqtt)?;
    variables::add_to_linker(linker, |state| &mut state.variables)?;
    Ok(())
}

/// What the instances of every component share: the app's variables, stores, connections and
/// limits.
pub struct Shared {
    pub variables: Arc<Variables>,
    pub key_value: Arc<KeyValueStores>,
    pub databases: Arc<Databases>,
    pub redis_connections: Arc<SharedConnections>,
    pub network: Arc<NetworkClient>,
    pub max_memory: Option<usize>,
    pub timeout: Duration,
}

/// What every instance of one component is made from: its grants and settings, and what all
/// components share.
pub struct ComponentParts {
    pub id: Arc<str>,
    pub env: Vec<(String, String)>,
    pub rules: Arc<OutboundRules>,
    pub kv_granted: Arc<HashSet<String>>,
    pub sqlite_granted: Arc<HashSet<String>>,
    /// Outbound PostgreSQL pools of this component (Spin keeps them per component).
    pub postgres_pools: Arc<PostgresPools>,
    /// stdout and stderr files in the runtime config's `log_dir`.
    pub log_files: Option<[Arc<Mutex<File>>; 2]>,
    pub shared: Arc<Shared>,
}

impl ComponentParts {
    /// A fresh store on `engine` for one request or message. `chaining` is given only to
    /// HTTP-triggered instances, the only ones Spin lets reach `*.spin.internal`.
    pub fn new_store(
        &self,
        engine: &Engine,
        log: LogContext,
        chaining: Option<Arc<dyn ServiceChaining>>,
    ) -> Store<InstanceState> {
        let deadline = Instant::now() + self.shared.timeout;
        let mut store = Store::new(engine, self.instance_state(log, chaining, deadline));
        store.limiter(|state| &mut state.limits);
        crate::engine::set_deadline(&mut store, deadline);
        store
    }

    fn instance_state(
        &self,
        log: LogContext,
        chaining: Option<Arc<dyn ServiceChaining>>,
        deadline: Instant,
    ) -> InstanceState {
        let shared = &self.shared;
        InstanceState {
            table: ResourceTable::new(),
            wasi: self.wasi(log),
            http: WasiHttpCtx::new(),
            outbound_http: OutboundHttp::new(
                self.id.clone(),
                self.rules.clone(),
                chaining,
                shared.network.clone(),
            ),
            key_value: KeyValueState::new(shared.key_value.clone(), self.kv_granted.clone()),
            sqlite: SqliteState::new(
                shared.databases.clone(),
                self.sqlite_granted.clone(),
                deadline,
            ),
            redis: RedisState::new(self.rules.clone(), shared.redis_connections.clone()),
            postgres: PostgresState::new(self.rules.clone(), self.postgres_pools.clone()),
            mqtt: MqttState::new(self.rules.clone()),
            variables: VariablesState::new(self.id.clone(), shared.variables.clone()),
            limits: crate::engine::MemoryLimit::new(shared.max_memory),
            deadline,
        }
    }

    /// WASI for one instance: the component's environment, its socket grants, and stdout and
    /// stderr as log lines of `log` (and the component's log files).
    fn wasi(&self, log: LogContext) -> WasiCtx {
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
        wasi.build()
    }
}
