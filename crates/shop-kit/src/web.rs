//! HTTP transport helpers shared by every component: request context, JSON responses in the
//! one error shape, query strings, admin checks and the common `health`/`events` answers.

use std::cell::{Cell, RefCell};

use serde::Serialize;
use spin_sdk::http::{Request, Response};

use crate::log::Logger;
use crate::routes::{Params, Resolved, Route};
use crate::sql::StoreUnavailable;
use crate::{ApiError, Failure, TraceContext};

/// What a request handler knows besides the request itself.
pub struct Ctx {
    pub service: &'static str,
    pub trace: TraceContext,
    pub log: Logger,
    /// Set by a handler whose work produced events: `component::serve` publishes after
    /// responding.
    publish: Cell<bool>,
    /// Set by the wake route: `component::serve` runs the wake loop with this arm after
    /// responding.
    wake: RefCell<Option<String>>,
}

impl Ctx {
    /// Continues the caller's trace (`traceparent`), or starts one.
    pub fn from_request(service: &'static str, req: &Request) -> Self {
        let trace = TraceContext::from_header(header(req, "traceparent"));
        let log = Logger::new(service, &trace.trace_id);
        Self {
            service,
            trace,
            log,
            publish: Cell::new(false),
            wake: RefCell::new(None),
        }
    }

    /// Asks for the outbox to be published once the response is sent, so that the client
    /// does not wait for the consumers.
    pub fn publish_after_response(&self) {
        self.publish.set(true);
    }

    /// Whether a handler asked for [`Ctx::publish_after_response`].
    pub fn wants_publish(&self) -> bool {
        self.publish.get()
    }

    /// Asks for the wake loop (see `wake`) to run with `arm` once the response is sent.
    pub fn wake_after_response(&self, arm: String) {
        *self.wake.borrow_mut() = Some(arm);
    }

    /// The arm of [`Ctx::wake_after_response`], taken.
    pub fn take_wake(&self) -> Option<String> {
        self.wake.borrow_mut().take()
    }

    /// Turns a failure into the error response, logging internal errors with their cause.
    pub fn failure(&self, failure: Failure) -> Response {
        let error = match failure {
            Failure::Api(e) => e,
            Failure::Internal(e) if e.downcast_ref::<StoreUnavailable>().is_some() => {
                self.log.error(&format!("{e:#}"), None);
                ApiError::unavailable("the service's store is unavailable; retry later")
            }
            Failure::Internal(e) => {
                self.log.error(&format!("internal error: {e:#}"), None);
                ApiError::internal()
            }
        };
        error_response(self.service, &error)
    }

    /// Checks the admin bearer token.
    pub fn require_admin(&self, req: &Request) -> Result<(), ApiError> {
        crate::auth::check_bearer(header(req, "authorization"), &crate::config::admin_token())
    }

    /// Checks that the bearer token is the `purpose` token of `message` (derived with `keys`
    /// from `internal_key`, see `seal`) or the admin token; the 401 names `what` is wanted.
    pub fn require_token_or_admin(
        &self,
        req: &Request,
        keys: Option<&crate::seal::Keys>,
        (purpose, message): (crate::seal::Purpose, &str),
        what: &str,
    ) -> Result<(), ApiError> {
        let presented = crate::auth::bearer(header(req, "authorization"));
        if keys.is_some_and(|keys| keys.check_token(purpose, message, presented)) {
            return Ok(());
        }
        self.require_admin(req)
            .map_err(|_| ApiError::credential_required(what))
    }
}

/// A header value as text.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name).and_then(|v| v.as_str())
}

/// The request's body as a JSON object, after checking that it says it is JSON.
pub fn json_object(req: &Request) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    crate::body::check_json_content_type(header(req, "content-type"))?;
    crate::body::parse_object(req.body())
}

/// A JSON response.
pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(bytes)
        .build()
}

/// An error in the one shape `{"error": {"code", "message", "service"}}`.
pub fn error_response(service: &str, error: &ApiError) -> Response {
    json(error.code.status(), &error.body(service))
}

/// 405 naming the methods the route accepts.
pub fn method_not_allowed(service: &str, allow: &str) -> Response {
    let error = ApiError::new(
        crate::ErrorCode::MethodNotAllowed,
        format!("method not allowed; use {allow}"),
    );
    let mut response = error_response(service, &error);
    response.set_header("allow", allow);
    response
}

/// 404 for a path no route serves.
pub fn no_route(service: &str) -> Response {
    error_response(service, &ApiError::not_found("no such route"))
}

/// The path split into percent-decoded segments, ignoring empty ones (`/orders/1/` gives
/// `["orders", "1"]`; `/payment-sim/charges/a%2Fb` gives `[.., "a/b"]`).
pub fn segments(req: &Request) -> Vec<String> {
    req.path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// The decoded query string pairs.
pub fn query(req: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(req.query().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Resolves `req` against the component's route table: the operation and its path
/// parameters, or the 404 / 405 answer.
pub fn resolve<Op: Copy>(
    service: &str,
    routes: &[Route<Op>],
    req: &Request,
) -> Result<(Op, Params), Response> {
    let segments = segments(req);
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match crate::routes::resolve(routes, &req.method().to_string(), &parts) {
        Resolved::Found(op, params) => Ok((op, params)),
        Resolved::MethodNotAllowed(allow) => Err(method_not_allowed(service, &allow)),
        Resolved::NotFound => Err(no_route(service)),
    }
}

/// Answers `GET /<fn>/openapi.json` with the component's OpenAPI document.
pub fn openapi(document: &'static str) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(document.as_bytes().to_vec())
        .build()
}

/// Answers `GET /<fn>/health`.
pub fn health(service: &str) -> Response {
    json(
        200,
        &serde_json::json!({"status": "ok", "service": service}),
    )
}

/// Answers `GET /<fn>/events?partition=P&after=N&limit=M` from the outbox of `db`, signed; a
/// function without an outbox publishes nothing and serves an empty feed, so every function
/// has the route. Readers are the consumers (the function's feed token, `seal`) and admins:
/// events carry card tokens and every order's story.
pub fn serve_feed(
    ctx: &Ctx,
    req: &Request,
    db: Option<&crate::sql::Db>,
) -> Result<Response, Failure> {
    let keys = crate::config::internal_keys();
    ctx.require_token_or_admin(
        req,
        keys.as_ref(),
        (crate::seal::Purpose::FeedToken, ctx.service),
        "a consumer's feed token or the admin bearer token",
    )?;
    let q = crate::outbox::feed_params(&query(req), ctx.service)?;
    let mut rows = match db {
        Some(db) => crate::outbox::page(db, ctx.service, &q)?,
        None => Vec::new(),
    };
    if let Some(keys) = &keys {
        rows.iter_mut().for_each(|row| keys.sign(&mut row.env));
    }
    Ok(json(200, &crate::outbox::feed_json(&rows, &q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded_one_by_one() {
        let req = Request::builder()
            .method(spin_sdk::http::Method::Get)
            .uri("/payment-sim//charges/a%2Fb%2A/")
            .build();
        assert_eq!(segments(&req), ["payment-sim", "charges", "a/b*"]);
    }
}
