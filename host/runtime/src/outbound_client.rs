//! Outbound HTTP over the network, as Spin's `factor-outbound-http` sends it: one client per
//! app whose idle connections later instances reuse (`[outbound_http] connection_pooling`, on
//! by default), at most `[outbound_http] max_connections` connections open at once, TLS by
//! rustls with the webpki roots, and the guest's request options: the connect, first-byte and
//! between-bytes timeouts (600 s each when unset, as Spin).
//!
//! Instances are short-lived, so without the pool every request would open (and every saga
//! step close) a TCP connection; under load that is a connect and a `TIME_WAIT` socket per
//! payment or webhook call.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::timeout::{TimeoutBody, TimeoutError};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Spin's timeout for each phase the guest leaves unset.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an idle pooled connection is kept (hyper-util's default, which Spin keeps).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

tokio::task_local! {
    /// The connect timeout of the request being sent. hyper-util's client asks its connector
    /// for a connection with nothing but the URI, so the per-request option travels this way
    /// (as in Spin); the connector runs inside the request's task.
    static CONNECT_TIMEOUT: Duration;
}

/// The app's HTTP client; cheap to share between instances.
pub struct NetworkClient {
    client: Client<hyper_rustls::HttpsConnector<Dialer>, WasiBody>,
}

impl NetworkClient {
    /// A client that pools connections when `pooling` is on, and otherwise closes each one
    /// after its response; with `max_connections`, a request that would open one more waits
    /// (within its connect timeout) until one closes.
    pub fn new(pooling: bool, max_connections: Option<usize>) -> Self {
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            })
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(Dialer {
                places: max_connections.map(|n| Arc::new(Semaphore::new(n))),
            });
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        if !pooling {
            builder.pool_max_idle_per_host(0);
        }
        Self {
            client: builder.build(connector),
        }
    }

    /// Sends `request` (an absolute URI) and returns its response, whose body fails with
    /// `ConnectionReadTimeout` when a frame takes longer than the between-bytes timeout.
    pub async fn send(
        &self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, Error> {
        let Timeouts {
            connect,
            first_byte,
            between_bytes,
        } = Timeouts::of(options.as_ref());
        let response = CONNECT_TIMEOUT
            .scope(
                connect,
                tokio::time::timeout(first_byte, self.client.request(request)),
            )
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(request_error)?;
        Ok(response.map(|body| {
            TimeoutBody::new(between_bytes, body)
                .map_err(body_error)
                .boxed_unsync()
        }))
    }
}

/// The time limits of one outbound request.
#[derive(Debug, PartialEq, Eq)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl Timeouts {
    /// The guest's request options, and Spin's default for each one it left unset: 600 s for
    /// all three, as Spin's `factor-outbound-http` (`wasi.rs`, `DEFAULT_TIMEOUT`) and
    /// wasmtime-wasi-http's own client. No shorter default here, so that a request that works
    /// on Spin works here; the instance's deadline (`--instance-timeout-secs`) ends a request
    /// that outlives the instance well before that.
    fn of(options: Option<&RequestOptions>) -> Self {
        let option = |pick: fn(&RequestOptions) -> Option<Duration>| {
            options.and_then(pick).unwrap_or(DEFAULT_TIMEOUT)
        };
        Self {
            connect: option(|o| o.connect_timeout),
            first_byte: option(|o| o.first_byte_timeout),
            between_bytes: option(|o| o.between_bytes_timeout),
        }
    }
}

/// Why a connection could not be opened; the client hands it back inside its own error.
#[derive(Debug, Clone, Copy)]
enum DialError {
    InvalidUri,
    Dns,
    Refused,
    Timeout,
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InvalidUri => "the URI names no host",
            Self::Dns => "the host name does not resolve",
            Self::Refused => "the connection was refused",
            Self::Timeout => "the connection was not established within the connect timeout",
        })
    }
}

impl std::error::Error for DialError {}

impl From<DialError> for Error {
    fn from(error: DialError) -> Self {
        match error {
            DialError::InvalidUri => Error::HttpRequestUriInvalid,
            DialError::Dns => Error::DnsError {
                rcode: Some("address not available".into()),
                info_code: Some(0),
            },
            DialError::Refused => Error::ConnectionRefused,
            DialError::Timeout => Error::ConnectionTimeout,
        }
    }
}

/// Opens TCP connections for the client, within the request's connect timeout.
#[derive(Clone)]
struct Dialer {
    /// One permit per connection `max_connections` allows.
    places: Option<Arc<Semaphore>>,
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<Permitted>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let limit = CONNECT_TIMEOUT
            .try_with(|limit| *limit)
            .unwrap_or(DEFAULT_TIMEOUT);
        let places = self.places.clone();
        Box::pin(async move {
            let host = uri.host().ok_or(DialError::InvalidUri)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            // The connect timeout covers the wait for a place too, as in Spin.
            let connect = async {
                let permit = match places {
                    Some(places) => Some(
                        places
                            .acquire_owned()
                            .await
                            .map_err(|_| DialError::Refused)?,
                    ),
                    None => None,
                };
                let addresses: Vec<_> = tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|_| DialError::Dns)?
                    .collect();
                let stream = TcpStream::connect(&*addresses).await.map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                        DialError::Dns
                    } else {
                        DialError::Refused
                    }
                })?;
                Ok(Permitted {
                    stream,
                    _permit: permit,
                })
            };
            let connection = tokio::time::timeout(limit, connect)
                .await
                .map_err(|_| DialError::Timeout)??;
            // Requests are small and answered at once: do not hold them back (Nagle).
            let _ = connection.stream.set_nodelay(true);
            Ok(TokioIo::new(connection))
        })
    }
}

/// A connection that holds its place under `max_connections` until it closes, pooled or not.
/// Written by hand: a stream that only carries a guard along is a few lines of delegation.
struct Permitted {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Permitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Permitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connection for Permitted {
    fn connected(&self) -> Connected {
        self.stream.connected()
    }
}

/// The wasi-http error for a failed request: the dial error when connecting failed, a TLS
/// error when the handshake after it did (the connector's only other step), and otherwise a
/// protocol error (as Spin).
fn request_error(error: hyper_util::client::legacy::Error) -> Error {
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(dial) = cause.downcast_ref::<DialError>() {
            return (*dial).into();
        }
        source = cause.source();
    }
    if error.is_connect() {
        return Error::TlsProtocolError;
    }
    tracing::warn!(error = %error, "outbound request failed");
    Error::HttpProtocolError
}

/// The wasi-http error for a response body that failed midway.
fn body_error(error: Box<dyn std::error::Error + Send + Sync>) -> Error {
    if error.is::<TimeoutError>() {
        return Error::ConnectionReadTimeout;
    }
    match error.downcast::<hyper::Error>() {
        Ok(error) => Error::from(*error),
        Err(_) => Error::HttpProtocolError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spin's defaults where the guest sets no timeout; the guest's own where it does.
    #[test]
    fn unset_timeouts_default_to_spins_600_seconds() {
        let spin = Duration::from_secs(600);
        let defaults = Timeouts {
            connect: spin,
            first_byte: spin,
            between_bytes: spin,
        };
        assert_eq!(Timeouts::of(None), defaults);
        assert_eq!(Timeouts::of(Some(&RequestOptions::default())), defaults);
        let options = RequestOptions {
            connect_timeout: Some(Duration::from_secs(2)),
            first_byte_timeout: None,
            between_bytes_timeout: Some(Duration::from_millis(500)),
        };
        assert_eq!(
            Timeouts::of(Some(&options)),
            Timeouts {
                connect: Duration::from_secs(2),
                first_byte: spin,
                between_bytes: Duration::from_millis(500),
            }
        );
    }
}
