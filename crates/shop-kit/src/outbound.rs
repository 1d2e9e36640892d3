//! Outbound HTTP with a per-request timeout, for the synchronous calls a handler waits on
//! (billing's payment provider, notifications' webhook).
//!
//! spin-sdk 5.2's `http::send` calls `wasi:http/outgoing-handler.handle` without
//! `request-options`, so a slow peer holds the handler until the host gives up. This sends
//! through the same `wasi:http@0.2.0` bindings the SDK generates (`spin_sdk::wit`) with
//! `connect-timeout` and `first-byte-timeout` set; both Spin's outbound HTTP and wasmtime's
//! default sender honour them and fail the call with `connection-timeout` /
//! `connection-read-timeout`. Hand-written because no crate sends through spin-sdk's own
//! bindings with options (wstd would bring a second async runtime and binding set).

use std::time::Duration;

use spin_sdk::http::conversions::{TryFromIncomingResponse, TryIntoOutgoingRequest};
use spin_sdk::http::{OutgoingBody, Request, Response};
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::RequestOptions;

/// Largest write `blocking-write-and-flush` accepts at once (wasi:io/streams).
const WRITE_CHUNK: usize = 4096;

/// The timeout named by the variable `name` in milliseconds, or `default_ms`.
pub fn timeout_from(name: &str, default_ms: u64) -> Duration {
    Duration::from_millis(crate::config::num_or(name, default_ms).max(1))
}

/// Sends `request`, failing when no connection is made or no response head arrives within
/// `timeout`. The wait blocks the instance, which has nothing else to do meanwhile.
pub async fn send(request: Request, timeout: Duration) -> anyhow::Result<Response> {
    let (outgoing, body) = request.try_into_outgoing_request()?;
    let options = RequestOptions::new();
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    options
        .set_connect_timeout(Some(nanos))
        .and_then(|()| options.set_first_byte_timeout(Some(nanos)))
        .map_err(|()| anyhow::anyhow!("the host refuses request timeouts"))?;
    let sink = outgoing
        .body()
        .map_err(|()| anyhow::anyhow!("request body already taken"))?;
    let pending = outgoing_handler::handle(outgoing, Some(options))?;
    {
        let stream = sink
            .write()
            .map_err(|()| anyhow::anyhow!("request body not writable"))?;
        for chunk in body.unwrap_or_default().chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk)?;
        }
    }
    OutgoingBody::finish(sink, None)?;
    pending.subscribe().block();
    let incoming = pending
        .get()
        .ok_or_else(|| anyhow::anyhow!("response not ready after waiting for it"))?
        .map_err(|()| anyhow::anyhow!("response already taken"))??;
    Ok(Response::try_from_incoming_response(incoming).await?)
}
