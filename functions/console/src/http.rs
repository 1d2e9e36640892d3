//! HTTP side of the console: `GET /console/...` answers an embedded file, `GET /console/health`
//! the common health answer; anything else the shop's one error shape (404, 405).

use shop_kit::web;
use spin_sdk::http::{Method, Request, Response};

use crate::{assets, SERVICE};

/// The console's Content-Security-Policy: its own files only, and API calls to its own
/// origin (where every function is routed). No inline code, no other origin, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; form-action 'none'; base-uri 'none'; \
frame-ancestors 'none'";

/// What a request resolves to, decided from its method and path alone (unit-tested natively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Health,
    File(assets::Asset),
    /// A path the console serves, with a method it does not accept.
    MethodNotAllowed,
    NotFound,
}

/// Resolves `method` and `path` (the request's whole path, `/console/...`).
pub fn resolve(method: &Method, path: &str) -> Answer {
    let Some(rest) = path.strip_prefix("/console") else {
        return Answer::NotFound;
    };
    let found = if rest == "/health" {
        Some(Answer::Health)
    } else {
        assets::lookup(rest).map(Answer::File)
    };
    match (found, method) {
        (None, _) => Answer::NotFound,
        (Some(answer), Method::Get) => answer,
        (Some(_), _) => Answer::MethodNotAllowed,
    }
}

/// Headers every answer carries, errors included: the policy, no MIME sniffing, no referrer
/// (order ids are in the fragment, never sent, but the page should leak nothing either).
fn secure(mut response: Response) -> Response {
    response.set_header("content-security-policy", CSP);
    response.set_header("x-content-type-options", "nosniff");
    response.set_header("referrer-policy", "no-referrer");
    response.set_header("x-frame-options", "DENY");
    response
}

/// Answers one request.
pub fn answer(req: &Request) -> Response {
    secure(match resolve(req.method(), req.path()) {
        Answer::Health => web::health(SERVICE),
        Answer::File(asset) => Response::builder()
            .status(200)
            .header("content-type", asset.content_type)
            // Revalidated each time: a new build's files are seen at once, and they are small.
            .header("cache-control", "no-cache")
            .body(asset.body.to_vec())
            .build(),
        Answer::MethodNotAllowed => web::method_not_allowed(SERVICE, "GET"),
        Answer::NotFound => web::no_route(SERVICE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_health_and_errors() {
        assert_eq!(resolve(&Method::Get, "/console/health"), Answer::Health);
        assert!(matches!(resolve(&Method::Get, "/console"), Answer::File(_)));
        assert!(matches!(
            resolve(&Method::Get, "/console/"),
            Answer::File(_)
        ));
        assert!(matches!(
            resolve(&Method::Get, "/console/app.js"),
            Answer::File(_)
        ));
        assert_eq!(resolve(&Method::Get, "/console/nope"), Answer::NotFound);
        assert_eq!(resolve(&Method::Get, "/consoleX/app.js"), Answer::NotFound);
        assert_eq!(resolve(&Method::Get, "/orders"), Answer::NotFound);
        assert_eq!(
            resolve(&Method::Post, "/console/"),
            Answer::MethodNotAllowed
        );
        assert_eq!(
            resolve(&Method::Delete, "/console/health"),
            Answer::MethodNotAllowed
        );
        assert_eq!(resolve(&Method::Post, "/console/nope"), Answer::NotFound);
    }

    #[test]
    fn the_policy_allows_no_other_origin() {
        assert!(CSP.starts_with("default-src 'none'"));
        for directive in CSP.split(';') {
            let sources: Vec<&str> = directive.split_whitespace().skip(1).collect();
            assert!(
                sources.iter().all(|s| *s == "'self'" || *s == "'none'"),
                "{directive}"
            );
        }
    }

    #[test]
    fn errors_are_in_the_shops_shape() {
        let req = Request::builder()
            .method(Method::Get)
            .uri("/console/nope")
            .build();
        let response = answer(&req);
        assert_eq!(*response.status(), 404);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["error"]["code"], "NOT_FOUND");
        assert_eq!(body["error"]["service"], "console");
        let csp = response
            .header("content-security-policy")
            .and_then(|v| v.as_str());
        assert_eq!(csp, Some(CSP));
    }
}
