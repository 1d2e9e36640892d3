//! Shared application library of the shop components.
//!
//! Pure parts (errors, request validation, envelope, inbox decisions, migration planning,
//! trace context) build and test natively; `sql`, `web`, `feed`, `outbox` and `config`
//! are thin adapters over `spin-sdk`.

pub mod auth;
pub mod body;
pub mod breaker;
pub mod claim;
pub mod component;
pub mod config;
pub mod consume;
pub mod deadletter;
pub mod envelope;
pub mod error;
pub mod feed;
pub mod inbox;
pub mod lease;
pub mod log;
pub mod migrate;
pub mod openapi;
pub mod outbound;
pub mod outbox;
pub mod pending;
pub mod publish;
pub mod push;
pub mod redo;
pub mod relay;
pub mod reply;
pub mod routes;
pub mod seal;
pub mod sql;
pub mod stream;
pub mod subscriptions;
pub mod testing;
pub mod time;
pub mod trace;
pub mod wake;
pub mod web;

pub use envelope::Envelope;
pub use error::{ApiError, ErrorCode, Failure};
pub use trace::TraceContext;
