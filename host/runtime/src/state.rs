//! The data of one `Store`: a fresh value per request or message, holding each capability's
//! per-instance state (as Spin's per-factor `InstanceState`). The only place that knows the
//! whole: it links every capability's interfaces to its own part of it.

use std::time::Instant;

use anyhow::Result;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::key_value::{self, KeyValueState};
use crate::mqtt_outbound::{self, MqttState};
use crate::outbound_http::OutboundHttp;
use crate::postgres_outbound::{self, PostgresState};
use crate::redis_outbound::{self, RedisState};
use crate::sqlite::{self, SqliteState};
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
