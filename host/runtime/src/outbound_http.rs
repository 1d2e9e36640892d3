//! Outgoing `wasi:http` through wasmtime-wasi-http's `send_request` hook, as Spin's
//! `factor-outbound-http`: every request is checked against the component's
//! `allowed_outbound_hosts`; `http://<component>.spin.internal` and relative URLs (the app itself,
//! allowed by `self`) are handed to the HTTP trigger in process (no socket), and only
//! HTTP-triggered instances get that path; the rest go out through the app's pooled
//! [`NetworkClient`]. A denied request fails with `ErrorCode::HttpRequestDenied`, the error Spin
//! returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Uri;
use spin_host_config::allowed_hosts::{chaining_target, AllowedHosts};
use tracing::Instrument;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::outbound_client::NetworkClient;
use crate::telemetry;

/// A component's network permissions (its expanded `allowed_outbound_hosts`).
pub struct OutboundRules {
    allowed: AllowedHosts,
}

impl OutboundRules {
    pub fn new(allowed: AllowedHosts) -> Self {
        Self { allowed }
    }

    /// Whether `address` (a URL; `scheme` when it has none) may be reached.
    pub fn allows_address(&self, address: &str, scheme: &str) -> bool {
        self.allowed.allows_url(address, scheme)
    }

    /// Whether a `wasi:sockets` connection to `addr` over `scheme` (`tcp`) may be made.
    pub fn allows_socket(&self, scheme: &str, addr: std::net::SocketAddr) -> bool {
        self.allowed.allows_socket(scheme, addr)
    }

    fn allows_uri(&self, uri: &Uri) -> bool {
        if is_relative(uri) {
            return self.allowed.allows_relative(&["http", "https"]);
        }
        match chained_component(uri) {
            Some(target) => self.allowed.allows_chaining_to(target),
            None => self.allowed.allows_url(&uri.to_string(), "https"),
        }
    }
}

/// Which in-process destination a request has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainTarget {
    /// `http://<component>.spin.internal/...`: that component, whatever its route.
    Component,
    /// A relative URL: the app itself, routed like an inbound request.
    App,
}

/// Hands an in-process request to the HTTP trigger's router.
pub trait ServiceChaining: Send + Sync {
    fn call(
        &self,
        target: ChainTarget,
        request: http::Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, Error>> + Send>>;
}

/// The `WasiHttpHooks` of one instance.
pub struct OutboundHttp {
    component: Arc<str>,
    rules: Arc<OutboundRules>,
    /// Present only for HTTP-triggered instances.
    chaining: Option<Arc<dyn ServiceChaining>>,
    network: Arc<NetworkClient>,
}

impl OutboundHttp {
    pub fn new(
        component: Arc<str>,
        rules: Arc<OutboundRules>,
        chaining: Option<Arc<dyn ServiceChaining>>,
        network: Arc<NetworkClient>,
    ) -> Self {
        Self {
            component,
            rules,
            chaining,
            network,
        }
    }
}

/// The component a `<id>.spin.internal` host names.
pub fn chained_component(uri: &Uri) -> Option<&str> {
    chaining_target(uri.host()?).filter(|id| !id.is_empty())
}

/// A request without a host: a relative URL, which Spin sends to the app itself.
fn is_relative(uri: &Uri) -> bool {
    uri.host().is_none_or(str::is_empty)
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// A response with nothing left for the guest to await: the in-process router has answered,
/// or the pool's own tasks drive the connection.
fn settled(
    response: http::Response<WasiBody>,
) -> (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
) {
    (response, Box::new(async { Ok(()) }))
}

fn denied(component: &Arc<str>, uri: &Uri) -> ResponseFuture {
    tracing::warn!(component = %component, uri = %uri, "outbound request denied by allowed_outbound_hosts");
    Box::new(async { Err(Error::HttpRequestDenied) })
}

impl WasiHttpHooks for OutboundHttp {
    /// Sends in a client span (Spin's `spin_outbound_http.send_request`), child of the
    /// instance's span, whose `traceparent` replaces any the guest set, as Spin does.
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let span = tracing::info_span!(
            "spin_outbound_http.send_request",
            otel.kind = "client",
            otel.name = request.method().as_str(),
            http.request.method = request.method().as_str(),
            url.full = %request.uri(),
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if let Some(value) =
            telemetry::traceparent(&span).and_then(|value| http::HeaderValue::try_from(value).ok())
        {
            request.headers_mut().insert(telemetry::TRACEPARENT, value);
        }
        let response = self.route(request, options);
        Box::new(
            async move {
                let result = Box::into_pin(response).await;
                let span = tracing::Span::current();
                match &result {
                    Ok((response, _)) => {
                        span.record("http.response.status_code", response.status().as_u16());
                    }
                    Err(_) => {
                        span.record("otel.status_code", "ERROR");
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

impl OutboundHttp {
    /// Checks the request against the component's rules and sends it where it goes: to the
    /// app in process, or over the network.
    fn route(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> ResponseFuture {
        let uri = request.uri().clone();
        if !self.rules.allows_uri(&uri) {
            return denied(&self.component, &uri);
        }
        let target = if is_relative(&uri) {
            Some(ChainTarget::App)
        } else {
            chained_component(&uri).map(|_| ChainTarget::Component)
        };
        if let Some(target) = target {
            // Only HTTP-triggered instances get a router to chain through, as in Spin.
            let Some(chaining) = self.chaining.clone() else {
                return denied(&self.component, &uri);
            };
            return Box::new(async move { Ok(settled(chaining.call(target, request).await?)) });
        }
        let network = self.network.clone();
        Box::new(async move { Ok(settled(network.send(request, options).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaining_hosts_name_their_component() {
        let uri: Uri = "http://orders.spin.internal/orders/1".parse().unwrap();
        assert_eq!(chained_component(&uri), Some("orders"));
        let uri: Uri = "http://example.com/".parse().unwrap();
        assert_eq!(chained_component(&uri), None);
        let uri: Uri = "http://.spin.internal/".parse().unwrap();
        assert_eq!(chained_component(&uri), None);
        assert!(is_relative(&"/orders".parse().unwrap()));
        assert!(!is_relative(&"http://example.com/".parse().unwrap()));
    }
}
