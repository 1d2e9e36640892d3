//! The HTTP trigger, as Spin's `trigger-http`: a hyper server on `--listen`, Spin's route
//! priority, the `spin-*` request headers, the host's own `/.well-known/spin/*` answers, a fresh
//! instance per request, in-process service chaining, a request body limit (413), a header read
//! timeout, graceful shutdown that lets in-flight requests finish, and Spin's spans (one per
//! request, parent from its `traceparent`, and one per component execution).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use spin_host_config::routes::{is_well_known, RouteMatch, Router};
use tokio::net::TcpListener;
use tracing::Instrument;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::app::{App, AppComponent};
use crate::engine;
use crate::metrics::Metrics;
use crate::outbound_http::{ChainTarget, ServiceChaining};
use crate::state::InstanceState;
use crate::stdio::LogContext;
use crate::telemetry::{self, TRACEPARENT};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub struct HttpTriggerConfig {
    pub listen: SocketAddr,
    pub max_request_body: usize,
}

/// The HTTP trigger; cheap to clone, shared by connections and by chained requests.
#[derive(Clone)]
pub struct HttpTrigger {
    inner: Arc<Inner>,
}

struct Inner {
    app: Arc<App>,
    router: Router,
    handlers: HashMap<String, (Arc<AppComponent>, ProxyPre<InstanceState>)>,
    listen: SocketAddr,
    max_request_body: usize,
    metrics: Arc<Metrics>,
}

/// Where a request came from.
#[derive(Clone, Copy)]
enum Origin {
    Client(SocketAddr),
    /// `http://<component>.spin.internal`, from a component of this app.
    Chained,
    /// A relative URL (`self` in `allowed_outbound_hosts`), from a component of this app.
    App,
}

impl HttpTrigger {
    pub fn new(app: Arc<App>, config: HttpTriggerConfig, metrics: Arc<Metrics>) -> Result<Self> {
        let (router, duplicates) = Router::from_manifest(&app.manifest)?;
        for duplicate in duplicates {
            tracing::warn!("{duplicate}");
        }
        if router.contains_reserved_route() {
            tracing::error!("routes under /.well-known/spin/ are reserved for the host and never reach a component");
        }
        let mut handlers = HashMap::new();
        for trigger in &app.manifest.triggers.http {
            let id = trigger.component_id().to_string();
            if handlers.contains_key(&id) {
                continue;
            }
            let component = app.component(&id)?.clone();
            let pre = ProxyPre::new(component.pre.clone())
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("component `{id}` is bound to an HTTP route but does not export wasi:http/incoming-handler")
                })?;
            handlers.insert(id, (component, pre));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                app,
                router,
                handlers,
                listen: config.listen,
                max_request_body: config.max_request_body,
                metrics,
            }),
        })
    }

    /// Serves until `shutdown` resolves, then waits for in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        // As `spin up` lists its available routes.
        for (route, component) in self.inner.router.routes() {
            tracing::info!(component, route, url = %format!("http://{}{}", self.inner.listen, route.trim_end_matches("/...")), "route");
        }
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // A response the guest streams leaves in several writes; with Nagle's algorithm
            // each after the first waits for the client's delayed ACK (40 ms on Linux) once a
            // kept-alive connection has left quick-ACK mode.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let trigger = self.clone();
            let service = hyper::service::service_fn(move |request| {
                let trigger = trigger.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        trigger.handle(request, Origin::Client(client)).await,
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, client = %client, "connection ended with an error");
                }
            });
        }
        drop(listener);
        tracing::info!("shutting down: waiting for in-flight requests");
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "in-flight requests still running after {SHUTDOWN_GRACE:?}; stopping anyway"
            );
        }
        Ok(())
    }

    /// Handles one request in its server span, whose parent is the request's `traceparent`,
    /// as Spin's `spin_trigger_http.handle_http_request`.
    async fn handle<B>(&self, request: Request<B>, origin: Origin) -> Response<HyperOutgoingBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path();
        // Routed before the span starts: its name (`<method> <route>`) is fixed once it has.
        let matched = (!is_well_known(path))
            .then(|| self.route(&request, origin))
            .flatten();
        let method = request.method().as_str();
        let route = matched.as_ref().map(|m| m.raw_route.as_str());
        let span = tracing::info_span!(
            "spin_trigger_http.handle_http_request",
            otel.kind = "server",
            otel.name = route.map_or_else(|| method.to_string(), |r| format!("{method} {r}")),
            http.request.method = method,
            url.path = path,
            http.route = route,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let parent = request.headers().get(TRACEPARENT);
        telemetry::set_parent(&span, parent.and_then(|v| v.to_str().ok()));
        self.respond(request, origin, matched)
            .instrument(span)
            .await
    }

    async fn respond<B>(
        &self,
        request: Request<B>,
        origin: Origin,
        matched: Option<RouteMatch>,
    ) -> Response<HyperOutgoingBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let path = request.uri().path().to_string();
        if let Some(response) = self.well_known(&path) {
            return response;
        }
        let Some(matched) = matched else {
            return error_response(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("no route for {path}"),
            );
        };
        let method = request.method().clone();
        let response = match self.limit_body(request) {
            Ok((request, exceeded)) => {
                let _in_flight = self.inner.metrics.instance(&matched.component_id, "http");
                let response = self.execute(request, origin, &matched).await;
                // The guest read past the limit before it answered: the host's 413 replaces
                // whatever it made of the failed read.
                if exceeded.load(Ordering::Relaxed) {
                    self.too_large()
                } else {
                    response
                }
            }
            Err(response) => response,
        };
        let (component, route) = (&matched.component_id, &matched.raw_route);
        let status = response.status().as_u16();
        let span = tracing::Span::current();
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.inner
            .metrics
            .http_request(component, route, status, duration_ms);
        tracing::info!(
            component = %component,
            trigger = "http",
            route = %route,
            method = %method,
            path = %path,
            status,
            duration_ms,
            internal = !matches!(origin, Origin::Client(_)),
            "request"
        );
        response
    }

    /// `/.well-known/spin/health` and `/info`, answered by the host before app routes.
    fn well_known(&self, path: &str) -> Option<Response<HyperOutgoingBody>> {
        match path {
            "/.well-known/spin/health" => Some(text_response(StatusCode::OK, "OK", "text/plain")),
            "/.well-known/spin/info" => {
                let info = serde_json::json!({
                    "host": "shop-host",
                    "version": env!("CARGO_PKG_VERSION"),
                    "app": self.inner.app.manifest.application.name,
                });
                Some(text_response(
                    StatusCode::OK,
                    &info.to_string(),
                    "application/json",
                ))
            }
            _ if is_well_known(path) => Some(error_response(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("no such host endpoint {path}"),
            )),
            _ => None,
        }
    }

    /// Routes a request; a chained one as if it hit the component's own route (`/...`), with
    /// the whole path as `spin-path-info`, as Spin does.
    fn route<B>(&self, request: &Request<B>, origin: Origin) -> Option<RouteMatch> {
        let path = request.uri().path();
        match origin {
            Origin::Client(_) | Origin::App => self.inner.router.route(path),
            Origin::Chained => {
                let component = crate::outbound_http::chained_component(request.uri())?;
                self.inner.router.chained(component, path)
            }
        }
    }

    /// The 413 answer for a body over `--max-request-body`.
    fn too_large(&self) -> Response<HyperOutgoingBody> {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "INVALID_ARGUMENT",
            &format!(
                "request body larger than {} bytes",
                self.inner.max_request_body
            ),
        )
    }

    /// The request with its body streamed to the guest as the guest reads it, never buffered
    /// here, and cut off past `--max-request-body` (counted as it streams); the flag tells
    /// whether that happened. A body declared larger (`Content-Length`) is answered with 413 at
    /// once, before any instance starts.
    #[allow(clippy::result_large_err)]
    fn limit_body<B>(
        &self,
        request: Request<B>,
    ) -> Result<(Request<WasiBody>, Arc<AtomicBool>), Response<HyperOutgoingBody>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.inner.max_request_body as u64;
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(self.too_large());
        }
        let exceeded = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| {
            LimitedBody {
                body: body.map_err(Into::into).boxed_unsync(),
                read: 0,
                limit,
                exceeded: exceeded.clone(),
                done: false,
            }
            .boxed_unsync()
        });
        Ok((request, exceeded))
    }

    async fn execute(
        &self,
        mut request: Request<WasiBody>,
        origin: Origin,
        matched: &RouteMatch,
    ) -> Response<HyperOutgoingBody> {
        let component_id = matched.component_id.as_str();
        let Some((component, pre)) = self.inner.handlers.get(component_id) else {
            return error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such component");
        };
        let client = match origin {
            Origin::Client(addr) => addr.to_string(),
            Origin::Chained | Origin::App => "127.0.0.1:0".to_string(),
        };
        let full_url = full_url(request.uri(), request.headers(), &self.inner.listen, origin);
        let headers = spin_headers(&full_url, matched, &client);
        prepare_headers(request.headers_mut(), headers, origin);
        if request.headers().get(http::header::HOST).is_none()
            && request.uri().authority().is_none()
        {
            if let Ok(host) = HeaderValue::from_str(&self.inner.listen.to_string()) {
                request.headers_mut().insert(http::header::HOST, host);
            }
        }
        // As Spin's `spin_trigger_http.execute_wasm`, inside the request's span.
        let span = tracing::info_span!(
            "spin_trigger_http.execute_wasm",
            otel.name = format!("execute_wasm_component {component_id}"),
            component = component_id,
        );
        let log = LogContext {
            component: component.id.clone(),
            trigger: "http",
            route: matched.raw_route.as_str().into(),
            traceparent: telemetry::traceparent(&span).map(Arc::from),
            metrics: self.inner.metrics.clone(),
        };
        let chaining: Arc<dyn ServiceChaining> = Arc::new(self.clone());
        let store = component.new_store(log, Some(chaining));
        let metrics = self.inner.metrics.clone();
        let id = component.id.clone();
        let instantiated = move |took| metrics.instantiated(&id, "http", took);
        match run_guest(store, pre.clone(), request, instantiated)
            .instrument(span)
            .await
        {
            Ok(response) => response,
            Err(e) => {
                tracing::error!(component = %component_id, error = format!("{e:#}"), "component failed");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "component failed",
                )
            }
        }
    }
}

/// Instantiates the component for one request and waits for its response head; the guest keeps
/// running in its own task while the response body streams.
async fn run_guest(
    mut store: wasmtime::Store<InstanceState>,
    pre: ProxyPre<InstanceState>,
    request: Request<WasiBody>,
    instantiated: impl FnOnce(std::time::Duration) + Send + 'static,
) -> Result<Response<HyperOutgoingBody>> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .map_err(anyhow::Error::from)?;
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(anyhow::Error::from)?;
    // The whole call, host calls included, ends at the instance's deadline: a response whose
    // head is out loses the rest of its body, otherwise the request gets 500 (`execute`).
    let deadline = store.data().deadline;
    let task = tokio::spawn(
        engine::until_deadline(deadline, async move {
            let started = std::time::Instant::now();
            let proxy = pre.instantiate_async(&mut store).await?;
            instantiated(started.elapsed());
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, out)
                .await
        })
        .in_current_span(),
    );
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => anyhow::bail!("component answered with error code {code:?}"),
        Err(_) => match task.await {
            Ok(Ok(Ok(()))) => anyhow::bail!("component returned without setting a response"),
            Ok(Ok(Err(e))) => Err(anyhow::Error::from(e)),
            Ok(Err(deadline)) => Err(deadline.into()),
            Err(e) => Err(e.into()),
        },
    }
}

/// A request body on its way to the guest, frame by frame as the guest reads it, that fails
/// with `HttpRequestBodySize` once more than `limit` bytes have come (and raises `exceeded`,
/// for the trigger's 413). Written by hand: http-body-util's `Limited` fails the same way but
/// with an error the guest cannot be given and the trigger cannot see.
struct LimitedBody {
    body:
        http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>,
    read: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
    /// Past the limit: nothing more is read.
    done: bool,
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        let frame = match std::task::ready!(Pin::new(&mut self.body).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(client_body_error(error)))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            self.read += data.len() as u64;
            if self.read > self.limit {
                self.done = true;
                self.exceeded.store(true, Ordering::Relaxed);
                let limit = self.limit;
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                    Some(limit),
                ))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The wasi-http error for a request body that failed to arrive: the chaining guest's own
/// error, hyper's for a client, a protocol error otherwise.
fn client_body_error(error: Box<dyn std::error::Error + Send + Sync>) -> wasmtime_wasi_http::Error {
    match error.downcast::<wasmtime_wasi_http::Error>() {
        Ok(error) => *error,
        Err(error) => match error.downcast::<hyper::Error>() {
            Ok(error) => wasmtime_wasi_http::Error::from(*error),
            Err(_) => wasmtime_wasi_http::Error::HttpProtocolError,
        },
    }
}

impl ServiceChaining for HttpTrigger {
    fn call(
        &self,
        target: ChainTarget,
        mut request: Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<WasiBody>, wasmtime_wasi_http::Error>> + Send>>
    {
        let trigger = self.clone();
        Box::pin(async move {
            let origin = match target {
                ChainTarget::Component => Origin::Chained,
                ChainTarget::App => {
                    // A relative URL addresses the app itself, as if sent to its listen address.
                    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = format!("http://{}{path}", trigger.inner.listen);
                    *request.uri_mut() = uri
                        .parse()
                        .map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?;
                    Origin::App
                }
            };
            Ok(trigger.handle(request, origin).await)
        })
    }
}

/// `spin-full-url`: scheme, `Host` (or the listen address), path and query.
fn full_url(uri: &http::Uri, headers: &HeaderMap, listen: &SocketAddr, origin: Origin) -> String {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host = match origin {
        Origin::Chained | Origin::App => uri.authority().map(|a| a.to_string()),
        Origin::Client(_) => headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string),
    }
    .unwrap_or_else(|| listen.to_string());
    format!("http://{host}{path_and_query}")
}

/// The `spin-*` headers Spin sets on every inbound request (`trigger-http/src/headers.rs`).
fn spin_headers(full_url: &str, matched: &RouteMatch, client: &str) -> Vec<(String, String)> {
    let mut headers = vec![
        ("spin-full-url".to_string(), full_url.to_string()),
        ("spin-path-info".to_string(), matched.path_info.clone()),
        (
            "spin-matched-route".to_string(),
            matched.matched_route.clone(),
        ),
        (
            "spin-raw-component-route".to_string(),
            matched.raw_route.clone(),
        ),
        (
            "spin-component-route".to_string(),
            matched.component_route.clone(),
        ),
        ("spin-base-path".to_string(), "/".to_string()),
        ("spin-client-addr".to_string(), client.to_string()),
    ];
    for (name, value) in matched.path_match_headers() {
        headers.push((name, value.to_string()));
    }
    headers
}

/// Sets the `spin-*` headers (replacing any the client sent) and drops `Connection`, and `Host`
/// on a chained request, as Spin does.
fn prepare_headers(headers: &mut HeaderMap, spin: Vec<(String, String)>, origin: Origin) {
    headers.remove(http::header::CONNECTION);
    if matches!(origin, Origin::Chained) {
        headers.remove(http::header::HOST);
    }
    for (name, value) in spin {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
        else {
            continue;
        };
        headers.insert(name, value);
    }
}

fn text_response(
    status: StatusCode,
    body: &str,
    content_type: &str,
) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(body.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// The project's error shape, for answers the host gives itself.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({
        "error": { "code": code, "message": message, "service": "shop-host" }
    });
    text_response(status, &body.to_string(), "application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    #[test]
    fn spin_headers_match_spin() {
        let matched = RouteMatch {
            component_id: "orders".into(),
            matched_route: "/orders/...".into(),
            raw_route: "/orders/...".into(),
            component_route: "/orders".into(),
            path_info: "/42".into(),
            params: vec![("id".to_string(), "42".to_string())],
        };
        let headers = spin_headers(
            "http://localhost:3000/orders/42?x=1",
            &matched,
            "127.0.0.1:5000",
        );
        assert_eq!(header(&headers, "spin-matched-route"), "/orders/...");
        assert_eq!(header(&headers, "spin-raw-component-route"), "/orders/...");
        assert_eq!(header(&headers, "spin-component-route"), "/orders");
        assert_eq!(header(&headers, "spin-path-info"), "/42");
        assert_eq!(header(&headers, "spin-base-path"), "/");
        assert_eq!(header(&headers, "spin-client-addr"), "127.0.0.1:5000");
        assert_eq!(header(&headers, "spin-path-match-id"), "42");
        assert_eq!(
            header(&headers, "spin-full-url"),
            "http://localhost:3000/orders/42?x=1"
        );
    }

    /// What the conformance suite's `request-shape` component (fermyon/conformance-tests)
    /// checks of the headers it receives for `GET /base/path/end/rest?key=value` with `Host:
    /// example.com`, routed to `/base/:path_segment/:path_end/...`: each `spin-*` header
    /// exactly once with one of the allowed values, `spin-client-addr` (optional) a socket
    /// address, and no other `spin-*` or `spin_*` header.
    #[test]
    fn request_shape_conformance_headers() {
        let (router, _) = Router::build([(
            "request-shape",
            &spin_host_config::manifest::HttpRoute::Path(
                "/base/:path_segment/:path_end/...".into(),
            ),
        )])
        .unwrap();
        let request = Request::get("/base/path/end/rest?key=value")
            .header("User-Agent", "my-agent")
            .header("Accept", "*/*")
            .header("Host", "example.com")
            .body(())
            .unwrap();
        let matched = router.route(request.uri().path()).unwrap();
        let listen: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let client = Origin::Client("10.0.0.7:51000".parse().unwrap());
        let url = full_url(request.uri(), request.headers(), &listen, client);
        let (mut parts, ()) = request.into_parts();
        prepare_headers(
            &mut parts.headers,
            spin_headers(&url, &matched, "10.0.0.7:51000"),
            client,
        );

        let expected: [(&str, &[&str]); 8] = [
            (
                "spin-raw-component-route",
                &["/base/:path_segment/:path_end/..."],
            ),
            (
                "spin-full-url",
                &[
                    "http://example.com/base/path/end/rest?key=value",
                    "https://example.com/base/path/end/rest?key=value",
                ],
            ),
            ("spin-path-info", &["/rest"]),
            ("spin-base-path", &["/"]),
            ("spin-component-route", &["/base/:path_segment/:path_end"]),
            ("spin-path-match-path-segment", &["path"]),
            ("spin-path-match-path-end", &["end"]),
            ("spin-matched-route", &["/base/:path_segment/:path_end/..."]),
        ];
        let mut seen: Vec<&str> = Vec::new();
        for (name, allowed) in expected {
            let values: Vec<&str> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(values.len(), 1, "exactly one {name}, got {values:?}");
            assert!(allowed.contains(&values[0]), "{name}: {values:?}");
            seen.push(name);
        }
        let client_addrs: Vec<_> = parts.headers.get_all("spin-client-addr").iter().collect();
        assert!(client_addrs.len() <= 1);
        for addr in client_addrs {
            addr.to_str().unwrap().parse::<SocketAddr>().unwrap();
        }
        seen.push("spin-client-addr");
        for name in parts.headers.keys() {
            let name = name.as_str();
            assert!(
                !(name.starts_with("spin-") || name.starts_with("spin_")) || seen.contains(&name),
                "unexpected special header {name}"
            );
        }
        assert_eq!(
            parts.headers.get(http::header::HOST).unwrap(),
            "example.com"
        );
    }

    #[test]
    fn full_url_uses_host_header_or_listen_address() {
        let listen: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let uri: http::Uri = "/a?b=c".parse().unwrap();
        let mut headers = HeaderMap::new();
        let client = Origin::Client(listen);
        assert_eq!(
            full_url(&uri, &headers, &listen, client),
            "http://127.0.0.1:3000/a?b=c"
        );
        headers.insert(http::header::HOST, HeaderValue::from_static("shop.local"));
        assert_eq!(
            full_url(&uri, &headers, &listen, client),
            "http://shop.local/a?b=c"
        );
        let chained: http::Uri = "http://orders.spin.internal/x".parse().unwrap();
        assert_eq!(
            full_url(&chained, &HeaderMap::new(), &listen, Origin::Chained),
            "http://orders.spin.internal/x"
        );
    }

    #[test]
    fn connection_and_chained_host_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(
            http::header::HOST,
            HeaderValue::from_static("orders.spin.internal"),
        );
        headers.insert("spin-path-info", HeaderValue::from_static("/forged"));
        prepare_headers(
            &mut headers,
            vec![("spin-path-info".into(), "/real".into())],
            Origin::Chained,
        );
        assert!(headers.get(http::header::CONNECTION).is_none());
        assert!(headers.get(http::header::HOST).is_none());
        assert_eq!(headers.get("spin-path-info").unwrap(), "/real");
    }
}
