//! The components' OpenAPI documents: each is served at `GET /<fn>/openapi.json` and checked
//! against the route table that drives the component's router.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::routes::Route;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The (METHOD, path) pairs an OpenAPI document describes.
pub fn operations(document: &str) -> Result<BTreeSet<(String, String)>, String> {
    let doc: Value = serde_json::from_str(document).map_err(|e| format!("not JSON: {e}"))?;
    let version = doc["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.1.") {
        return Err(format!("openapi must be 3.1.x, found {version:?}"));
    }
    let paths = doc["paths"].as_object().ok_or("no paths object")?;
    Ok(paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect())
}

/// Fails, naming the differences, unless `document` describes exactly the routes in `routes`.
pub fn check_document<Op>(document: &str, routes: &[Route<Op>]) -> Result<(), String> {
    let documented = operations(document)?;
    let served: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    if undocumented.is_empty() && unserved.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "served but not documented: {undocumented:?}; documented but not served: {unserved:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route<()>] = &[
        Route::new("GET", "/x/{id}", ()),
        Route::new("PUT", "/x/{id}", ()),
    ];

    #[test]
    fn documents_must_match_the_route_table_both_ways() {
        let doc = |paths: &str| format!(r#"{{"openapi": "3.1.0", "paths": {paths}}}"#);
        let exact = doc(r#"{"/x/{id}": {"get": {}, "put": {}, "parameters": []}}"#);
        assert_eq!(check_document(&exact, ROUTES), Ok(()));
        let missing = doc(r#"{"/x/{id}": {"get": {}}}"#);
        assert!(check_document(&missing, ROUTES)
            .unwrap_err()
            .contains(r#"served but not documented: [("PUT", "/x/{id}")]"#));
        let extra = doc(r#"{"/x/{id}": {"get": {}, "put": {}}, "/y": {"post": {}}}"#);
        assert!(check_document(&extra, ROUTES)
            .unwrap_err()
            .contains(r#"documented but not served: [("POST", "/y")]"#));
        assert!(check_document(r#"{"openapi": "3.0.3", "paths": {}}"#, ROUTES).is_err());
    }
}
