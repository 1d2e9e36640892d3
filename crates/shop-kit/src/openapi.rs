//! The components' OpenAPI documents: each is served at `GET /<fn>/openapi.json` and checked
//! against the route table that drives the component's router.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::routes::Route;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

const ERROR_SCHEMA: &str = "#/components/schemas/Error";

fn parse(document: &str) -> Result<Value, String> {
    let doc: Value = serde_json::from_str(document).map_err(|e| format!("not JSON: {e}"))?;
    let version = doc["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.1.") {
        return Err(format!("openapi must be 3.1.x, found {version:?}"));
    }
    if !doc["paths"].is_object() {
        return Err("no paths object".into());
    }
    Ok(doc)
}

/// Every operation of `doc`: (METHOD, path, operation object).
fn each_operation(doc: &Value) -> impl Iterator<Item = (String, &String, &Value)> {
    doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(move |m| item.get(*m).map(|op| (m.to_uppercase(), path, op)))
        })
}

/// The error responses (4xx, 5xx) whose body is not the one error shape, as `METHOD path status`.
fn errors_off_shape(doc: &Value) -> Vec<String> {
    let mut off = Vec::new();
    for (method, path, op) in each_operation(doc) {
        for (status, response) in op["responses"].as_object().into_iter().flatten() {
            if !status.starts_with(['4', '5']) {
                continue;
            }
            let response = match response["$ref"].as_str() {
                Some(r) => r
                    .strip_prefix("#/components/responses/")
                    .map_or(&Value::Null, |name| &doc["components"]["responses"][name]),
                None => response,
            };
            if response["content"]["application/json"]["schema"]["$ref"] != ERROR_SCHEMA {
                off.push(format!("{method} {path} {status}"));
            }
        }
    }
    off
}

/// Fails, naming the differences, unless `document` describes exactly the routes in `routes`
/// and every error it documents has the one error shape.
pub fn check_document<Op>(document: &str, routes: &[Route<Op>]) -> Result<(), String> {
    let doc = parse(document)?;
    let documented: BTreeSet<(String, String)> = each_operation(&doc)
        .map(|(method, path, _)| (method, path.clone()))
        .collect();
    let served: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    if !undocumented.is_empty() || !unserved.is_empty() {
        return Err(format!(
            "served but not documented: {undocumented:?}; documented but not served: {unserved:?}"
        ));
    }
    match errors_off_shape(&doc) {
        off if off.is_empty() => Ok(()),
        off => Err(format!("errors not in the {ERROR_SCHEMA} shape: {off:?}")),
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

    #[test]
    fn documented_errors_must_have_the_one_shape() {
        let doc = |not_found: &str| {
            format!(
                r##"{{"openapi": "3.1.0",
                "components": {{"responses": {{"NotFound": {{"content": {{"application/json":
                    {{"schema": {{"$ref": "#/components/schemas/Error"}}}}}}}}}}}},
                "paths": {{"/x/{{id}}": {{"put": {{}}, "get": {{"responses": {{
                    "200": {{}}, "404": {not_found}}}}}}}}}}}"##
            )
        };
        assert_eq!(
            check_document(
                &doc(r##"{"$ref": "#/components/responses/NotFound"}"##),
                ROUTES
            ),
            Ok(())
        );
        let inline = r##"{"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}"##;
        assert_eq!(check_document(&doc(inline), ROUTES), Ok(()));
        let err = check_document(&doc(r#"{"description": "plain text"}"#), ROUTES).unwrap_err();
        assert!(err.contains(r#"["GET /x/{id} 404"]"#), "{err}");
        let dangling = r##"{"$ref": "#/components/responses/Gone"}"##;
        assert!(check_document(&doc(dangling), ROUTES).is_err());
    }
}
