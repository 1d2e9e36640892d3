//! The data of one `Store`: a fresh value per request or message, holding each capability's
//! per-instance state (as Spin's per-factor `InstanceState`).

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::key_value::KeyValueState;
use crate::mqtt_outbound::MqttState;
use crate::outbound_http::OutboundHttp;
use crate::postgres_outbound::PostgresState;
use crate::redis_outbound::RedisState;
use crate::sqlite::SqliteState;
use crate::variables::VariablesState;

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
