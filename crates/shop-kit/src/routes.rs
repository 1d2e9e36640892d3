//! Route tables. Each component lists the routes it serves — method, path template and the
//! operation that answers — in one table that drives its router and that its unit tests
//! compare with its OpenAPI document, so that code and contract cannot drift apart.

/// One route: `path` is an OpenAPI path template whose `{name}` segments are parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<Op> {
    pub method: &'static str,
    pub path: &'static str,
    pub op: Op,
}

impl<Op> Route<Op> {
    pub const fn new(method: &'static str, path: &'static str, op: Op) -> Self {
        Self { method, path, op }
    }
}

/// The path parameters of a matched route, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The value of `{name}`; empty when the template has no such parameter, which every
    /// parameter check rejects.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// What a request resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<Op> {
    Found(Op, Params),
    /// The path exists but not with this method; the methods it accepts, for `Allow`.
    MethodNotAllowed(String),
    NotFound,
}

fn parameter(segment: &str) -> Option<&str> {
    segment.strip_prefix('{')?.strip_suffix('}')
}

/// The parameters of `template` when it matches `segments`.
fn matches(template: &'static str, segments: &[&str]) -> Option<Params> {
    let parts: Vec<&'static str> = template.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Params::default();
    for (part, segment) in parts.iter().zip(segments) {
        match parameter(part) {
            Some(name) => params.0.push((name, segment.to_string())),
            None if part == segment => {}
            None => return None,
        }
    }
    Some(params)
}

/// Literal segments win over parameters, position by position (`/orders/health` beats
/// `/orders/{id}`), as in Spin's own router.
fn specificity(template: &str) -> Vec<bool> {
    template
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| parameter(s).is_none())
        .collect()
}

/// Resolves `method` and the path `segments` against `routes`.
pub fn resolve<Op: Copy>(routes: &[Route<Op>], method: &str, segments: &[&str]) -> Resolved<Op> {
    let best = routes
        .iter()
        .filter(|r| matches(r.path, segments).is_some())
        .map(|r| r.path)
        .max_by_key(|path| specificity(path));
    let Some(path) = best else {
        return Resolved::NotFound;
    };
    let same_path = || routes.iter().filter(move |r| r.path == path);
    match same_path().find(|r| r.method == method) {
        Some(route) => Resolved::Found(route.op, matches(path, segments).unwrap_or_default()),
        None => {
            let allow: Vec<&str> = same_path().map(|r| r.method).collect();
            Resolved::MethodNotAllowed(allow.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route<u8>] = &[
        Route::new("GET", "/orders", 1),
        Route::new("POST", "/orders", 2),
        Route::new("GET", "/orders/health", 3),
        Route::new("GET", "/orders/{id}", 4),
        Route::new("POST", "/orders/{id}/cancel", 5),
    ];

    #[test]
    fn literals_beat_parameters_and_parameters_are_named() {
        assert_eq!(
            resolve(ROUTES, "GET", &["orders", "health"]),
            Resolved::Found(3, Params::default())
        );
        match resolve(ROUTES, "POST", &["orders", "o-1", "cancel"]) {
            Resolved::Found(5, params) => {
                assert_eq!(params.get("id"), "o-1");
                assert_eq!(params.get("sku"), "");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_methods_name_the_allowed_ones_and_unknown_paths_are_not_found() {
        assert_eq!(
            resolve(ROUTES, "DELETE", &["orders"]),
            Resolved::MethodNotAllowed("GET, POST".into())
        );
        assert_eq!(
            resolve(ROUTES, "POST", &["orders", "health"]),
            Resolved::MethodNotAllowed("GET".into())
        );
        assert_eq!(
            resolve(ROUTES, "GET", &["orders", "a", "b"]),
            Resolved::NotFound
        );
        assert_eq!(resolve(ROUTES, "GET", &[]), Resolved::NotFound);
    }
}
