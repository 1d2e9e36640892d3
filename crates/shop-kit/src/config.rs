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
