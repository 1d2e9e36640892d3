//! `shop-host`: a Spin-compatible local host on Wasmtime. It runs a Spin app's `spin.toml` as
//! Spin would (see `/work/shared/SPIN-SEMANTICS.md` for the behaviour reproduced), shaped like
//! Spin's runtime: the manifest and runtime config come from `spin-host-config`; [`engine`] holds
//! the Wasmtime configuration; one module per host capability, each linking its interfaces to its
//! own per-instance state, which `state` gathers into a store's data; one module per trigger.
//! Public are only what the binary ([`cli`], [`logging`]) and the tests
//! ([`engine::componentize`]) use.
//!
//! Key-value is served as `fermyon:spin/key-value@2.0.0` (`key_value`) and as
//! `wasi:keyvalue@0.2.0-draft2` `store`, `atomics` and `batch` (`wasi_keyvalue`), on the same
//! stores. Spin interfaces this host does not implement (llm, mysql, wasi:config, spin:postgres
//! other than 3.0.0 and 4.0.0, spin:mqtt, the unversioned fermyon:spin ones) are linked as
//! traps: a component importing them loads, and fails only if it calls them.

mod app;
mod bindings;
pub mod cli;
pub mod engine;
mod key_value;
pub mod logging;
mod metrics;
mod mqtt_outbound;
mod outbound_client;
mod outbound_http;
mod postgres_outbound;
mod postgres_types;
mod redis_outbound;
mod sockets;
mod sqlite;
mod state;
mod stdio;
mod telemetry;
mod trigger;
mod variables;
mod wasi_keyvalue;
