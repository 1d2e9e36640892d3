//! Component variables (`[component.x.variables]`, fed from the application's `[variables]`).

/// A variable, or `default` when the component does not define it or it is empty.
pub fn var_or(name: &str, default: &str) -> String {
    match spin_sdk::variables::get(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => default.to_string(),
    }
}

/// A numeric variable, or `default` when absent or not a number.
pub fn num_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    spin_sdk::variables::get(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The admin token; empty (so nobody authenticates) when not configured.
pub fn admin_token() -> String {
    var_or("admin_token", "")
}

/// Where Redis is (`redis://host:port`).
pub fn redis_address() -> String {
    var_or("redis_address", "redis://127.0.0.1:6379")
}

/// The app's own base URL, used to read other functions' feeds.
pub fn app_base_url() -> String {
    var_or("app_base_url", "http://127.0.0.1:3000")
}

/// How producers hand events to consumers (variable `event_delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventDelivery {
    /// Publish on the `shop.<source>` Redis channels; Spin's Redis trigger runs the consumers.
    Redis,
    /// POST each event to every subscriber's `/<consumer>/events/deliveries` route, for
    /// platforms without a Redis trigger (Fermyon Cloud). See docs/adr/0004.
    Http,
}

/// The configured delivery mode: `http`, or `redis` for anything else (the default).
pub fn event_delivery() -> EventDelivery {
    if var_or("event_delivery", "redis").eq_ignore_ascii_case("http") {
        EventDelivery::Http
    } else {
        EventDelivery::Redis
    }
}

/// The bearer token of the delivery routes; empty (so no delivery is accepted) when not
/// configured. Separate from the admin token so that whoever sweeps or stocks products cannot
/// inject events.
pub fn delivery_token() -> String {
    var_or("delivery_token", "")
}

/// The keys derived from the functions' shared secret `internal_key` (see `seal`); `None`
/// when it is not configured, and then nothing is signed or trusted.
pub fn internal_keys() -> Option<crate::seal::Keys> {
    crate::seal::Keys::new(&var_or("internal_key", ""))
}
