//! `shop-host`: a Spin-compatible local host on Wasmtime. It runs a Spin app's `spin.toml` as
//! Spin would (see `/work/shared/SPIN-SEMANTICS.md` for the behaviour reproduced), shaped like
//! Spin's runtime: the manifest and runtime config come from `spin-host-config`; [`engine`] holds
//! the Wasmtime configuration; one module per host capability; one module per trigger.
//!
//! Key-value is served as `fermyon:spin/key-value@2.0.0` ([`key_value`]) and as
//! `wasi:keyvalue@0.2.0-draft2` `store`, `atomics` and `batch` ([`wasi_keyvalue`]), on the same
//! stores. Spin interfaces this host does not implement (llm, mysql, wasi:config, spin:postgres
//! other than 3.0.0 and 4.0.0, spin:mqtt, the unversioned fermyon:spin ones) are linked as
//! traps: a component importing them loads, and fails only if it calls them.

pub mod app;
pub mod bindings;
pub mod cli;
pub mod engine;
pub mod key_value;
pub mod logging;
pub mod metrics;
pub mod mqtt_outbound;
pub mod outbound_client;
pub mod outbound_http;
pub mod postgres_outbound;
mod postgres_types;
pub mod redis_outbound;
pub mod sockets;
pub mod sqlite;
pub mod state;
pub mod stdio;
pub mod telemetry;
pub mod trigger;
pub mod variables;
pub mod wasi_keyvalue;
