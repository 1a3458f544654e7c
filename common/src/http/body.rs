//! Request bodies: the announced length, and draining what a server
//! refuses.

use std::time::Duration;

/// The announced body length: `Ok(None)` without a `Content-Length`, an
/// error when it is not a number.
pub fn content_length(headers: &axum::http::HeaderMap) -> Result<Option<u64>, &'static str> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("Content-Length is not a number")
        })
        .transpose()
}

/// Reads and discards up to `limit` bytes of `body`, each chunk within
/// `stall`. A server that refuses an upload half-way does this before
/// answering, so the client gets the answer instead of a connection reset
/// in the middle of sending.
pub async fn drain<S, E>(body: &mut S, limit: u64, stall: Duration)
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    use futures::StreamExt;
    let mut drained = 0u64;
    while drained < limit {
        match tokio::time::timeout(stall, body.next()).await {
            Ok(Some(Ok(chunk))) => drained += chunk.len() as u64,
            _ => return,
        }
    }
}

/// How much of a refused upload [`drain`] reads at most.
pub const DRAIN_LIMIT: u64 = 64 << 20;
