//! Triggers: one module per trigger type, as Spin's `trigger-http` and `trigger-redis`.

pub mod background;
pub mod http;
pub mod redis;
