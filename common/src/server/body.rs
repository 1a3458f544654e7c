//! The bodies of a request and of its answer, wrapped: each holds a
//! [`BusyGuard`] so the connection counts as busy until both are done, and
//! a request body the handler drops unread is drained in the background.
//!
//! Why drain: a handler that refuses a request early (`403`, `409`, `400`)
//! answers without reading the body. Closing the socket with unread bytes
//! in it makes the kernel send a reset, and a client that sends its whole
//! body before reading (Python's http.client, for one) then sees a broken
//! pipe instead of the answer. Reading on, up to [`DRAIN_LIMIT`], lets it
//! finish sending and read the answer.
//!
//! The exception is a request with `Expect: 100-continue` whose body was
//! never asked for: the client is waiting for our answer before it sends
//! anything, so there is nothing to drain (hyper then skips the
//! `100 Continue` and closes the connection after the answer).

use super::connection::BusyGuard;
use crate::http::{drain, DRAIN_LIMIT};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Wraps a request's body (see the module docs).
pub(super) fn request(
    req: hyper::Request<Incoming>,
    stall: Duration,
    guard: BusyGuard,
) -> hyper::Request<RequestBody> {
    let expects_continue = req
        .headers()
        .get(hyper::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    req.map(|inner| RequestBody {
        inner: Some(inner),
        ended: false,
        polled: false,
        expects_continue,
        stall,
        guard: Some(guard),
    })
}

/// Wraps an answer's body so the connection stays busy until it is sent
/// (or dropped): the guard lives in the frame mapping, which passes every
/// frame through unchanged (counting its bytes).
pub(super) fn response(
    resp: axum::response::Response,
    guard: BusyGuard,
) -> hyper::Response<impl Body<Data = Bytes, Error = axum::Error> + Send + 'static> {
    resp.map(|inner| {
        inner.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                guard.metrics().sent(data.len());
            }
            frame
        })
    })
}

/// A request body that counts its bytes as they arrive and drains itself
/// when dropped unread.
pub(super) struct RequestBody {
    /// Always `Some` until dropped.
    inner: Option<Incoming>,
    /// The stream ended (or failed): nothing left to drain.
    ended: bool,
    /// The handler asked for the body at least once.
    polled: bool,
    expects_continue: bool,
    /// How long to wait for each chunk while draining.
    stall: Duration,
    guard: Option<BusyGuard>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.polled = true;
        let inner = this.inner.as_mut().expect("present until dropped");
        let poll = Pin::new(inner).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(guard)) = (frame.data_ref(), &this.guard) {
                    guard.metrics().received(data.len());
                }
            }
            Poll::Ready(None | Some(Err(_))) => this.ended = true,
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.as_ref().is_some_and(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if self.is_end_stream() || (self.expects_continue && !self.polled) {
            return;
        }
        let (Some(inner), Ok(runtime)) = (self.inner.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let (stall, guard) = (self.stall, self.guard.take());
        runtime.spawn(async move {
            use futures::StreamExt;
            let mut data = http_body_util::BodyDataStream::new(inner).inspect(|chunk| {
                if let (Ok(chunk), Some(guard)) = (chunk, &guard) {
                    guard.metrics().received(chunk.len());
                }
            });
            drain(&mut data, DRAIN_LIMIT, stall).await;
            drop(data);
            // The connection is idle (or closed, if the limit was hit) only
            // once the drain is over.
            drop(guard);
        });
    }
}
