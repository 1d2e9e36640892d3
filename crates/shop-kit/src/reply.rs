//! Hands a finished response to the host in one piece.
//!
//! spin-sdk's `ResponseOutparam::set_with_body` sets the head first and writes the body after,
//! without a `content-length`: the host hands the head on before the body exists, and must frame
//! the body as chunked since nobody said how long it is. The functions always answer with a body
//! already in memory, so here it goes the other way round: length declared, body written and
//! finished first, head handed over last, when the stream takes the whole body without waiting
//! for a reader (Spin's and this project's host buffer one chunk of up to 1 MiB). Clients get a
//! length-delimited body. A larger body is streamed after the head, as the SDK does.

use spin_sdk::http::{OutgoingBody, OutgoingResponse, Response, ResponseOutparam};
use wasi::io::streams::{OutputStream, StreamError};

/// Sends `response` through `out`; an error means the client got no complete response.
pub fn send(out: ResponseOutparam, mut response: Response) -> anyhow::Result<()> {
    let body = std::mem::take(response.body_mut());
    if declares_length(*response.status()) {
        response.set_header("content-length", body.len().to_string());
    }
    let head = OutgoingResponse::try_from(response)?;
    let outgoing = head
        .body()
        .map_err(|()| anyhow::anyhow!("response body already taken"))?;
    let stream = outgoing
        .write()
        .map_err(|()| anyhow::anyhow!("response body not writable"))?;
    let room = stream.check_write().unwrap_or(0);
    let head_last = if body_first(room, body.len()) {
        Some((out, head))
    } else {
        out.set(head);
        None
    };
    write_all(&stream, &body)?;
    drop(stream);
    OutgoingBody::finish(outgoing, None)?;
    if let Some((out, head)) = head_last {
        out.set(head);
    }
    Ok(())
}

/// Whether a response of `status` carries a `content-length` (RFC 9110 §8.6: never 204, and
/// 304 would have to repeat the representation's).
fn declares_length(status: u16) -> bool {
    !matches!(status, 204 | 304)
}

/// Whether a body of `len` bytes can be written before the head: the stream must take it all
/// at once (`room`, from `check-write`), since nobody reads it until the head is set.
fn body_first(room: u64, len: usize) -> bool {
    u64::try_from(len).is_ok_and(|len| len <= room)
}

/// Writes all of `bytes`, waiting for room whenever the stream has none (only after the head
/// is set: before it, [`body_first`] made sure the room was there). Written here because
/// spin-sdk's own writer takes the body stream itself, so `check-write` could not be asked first.
fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), StreamError> {
    while !bytes.is_empty() {
        let room = stream.check_write()?;
        if room == 0 {
            stream.subscribe().block();
            continue;
        }
        let now = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        stream.write(&bytes[..now])?;
        bytes = &bytes[now..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_goes_first_only_when_the_stream_takes_all_of_it() {
        assert!(body_first(1 << 20, 0));
        assert!(body_first(1 << 20, 1 << 20));
        assert!(!body_first(1 << 20, (1 << 20) + 1));
        assert!(!body_first(0, 1), "a full or closed stream takes nothing");
    }

    #[test]
    fn no_content_length_where_http_forbids_one() {
        assert!(declares_length(200));
        assert!(declares_length(404));
        assert!(!declares_length(204));
        assert!(!declares_length(304));
    }
}
