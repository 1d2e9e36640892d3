//! Configuration side of the local Spin-compatible host: everything that can be decided
//! without running WebAssembly. Each module mirrors one Spin crate so that behaviour can be
//! checked against Spin's source:
//!
//! - [`manifest`]: `spin.toml` (manifest v2) types, loading and validation (`spin-manifest`).
//! - [`variables`]: application/component variables and `{{ name }}` templates
//!   (`spin-expressions`, `spin-variables-env`).
//! - [`routes`]: the HTTP router and `spin-*` route headers' values (`spin-http-routes`).
//! - [`allowed_hosts`]: `allowed_outbound_hosts` and service chaining
//!   (`spin-outbound-networking-config`).
//! - [`runtime_config`]: `runtime-config.toml` stores, state and log directories
//!   (`spin-runtime-config`).
//!
//! Where this host supports less than Spin, it refuses with a message saying so instead of
//! silently ignoring configuration.

pub mod allowed_hosts;
pub mod manifest;
pub mod routes;
pub mod runtime_config;
pub mod variables;
