//! GetObject's zero-copy path: a volume's answer passed on to the S3
//! client inside the kernel (`splice(2)` from the volume's socket into a
//! pipe, and from the pipe into the client's socket), instead of being
//! read into the gateway and written out again.
//!
//! The gateway opens its own HTTP/1.1 connection to the volume for this:
//! a plain `GET` of the (signed, write-pinned) URL the master redirects
//! to, with the `Range` wanted. Only its head is read and parsed (at most
//! [`MAX_HEAD`] bytes); the body is then moved by [`SplicePipe`] and sent
//! by the connection's [`ZeroCopy`] queue (see
//! `trove_common::server::zerocopy`).
//!
//! What stays as on the ordinary path (`trove_client`'s streams):
//!
//! - Replicas are tried in the same order (the redirect's first, then the
//!   others) until one answers `200`/`206` with exactly the expected
//!   length and range. When none does, the ordinary path is taken, with
//!   its own fail-over and error reporting.
//! - A volume that fails after the first byte (closes early, or sends
//!   nothing for the client's stall timeout) is replaced mid-way: the
//!   rest is read through `trove_client` by `Range`, after checking that
//!   the key still holds the same value (else the answer is cut short:
//!   old and new bytes are never spliced together).
//! - Integrity: the gateway does not hash what it passes on either way
//!   (it could only cut the body short after the fact); each volume
//!   checks every block's CRC32C before sending it and cuts its answer at
//!   a block that fails, which this path sees as a volume failing
//!   mid-way.

use crate::get::Outgoing;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use s3s::stream::{ByteStream, RemainingLength};
use s3s::StdError;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use trove_client::{ByteRange, Client, GetOptions, GetStream, Stat};
use trove_common::server::zerocopy::{SplicePipe, ZeroCopy, MAX_CHUNK};

/// Values (or ranges) shorter than this take the ordinary path: a
/// connection of their own to the volume would cost more than the copy.
pub const MIN_SPLICE: u64 = 1 << 20;

/// The largest head of a volume's answer read.
pub const MAX_HEAD: usize = 64 * 1024;

/// A volume's answer whose head has been read and checked.
struct Upstream {
    tcp: TcpStream,
    /// Body bytes that arrived with the head.
    leftover: Bytes,
}

/// Opens `range` of the value `stat` describes on the first replica that
/// answers as expected; `None` when none does (or the redirect is not
/// plain HTTP), for the ordinary path to take over.
pub async fn open(
    client: &Client,
    key: &str,
    stat: &Stat,
    range: Range<u64>,
    zc: ZeroCopy,
) -> Option<SplicedBody> {
    let (first, target) = split_location(&stat.location)?;
    let mut sources = vec![first.to_string()];
    sources.extend(stat.volumes.iter().filter(|v| *v != first).cloned());
    let stall = client.stall_timeout();
    for source in &sources {
        let opened = tokio::time::timeout(stall, request(source, target, &range, stat.size)).await;
        match opened {
            Ok(Ok(upstream)) => {
                let pipe = match SplicePipe::new() {
                    Ok(p) => Arc::new(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot make a pipe; copying instead");
                        return None;
                    }
                };
                let spliced = Spliced {
                    client: client.clone(),
                    key: key.to_string(),
                    stat: stat.clone(),
                    upstream: Some(upstream),
                    pipe,
                    zc,
                    pos: range.start,
                    end: range.end,
                    stall,
                    stalled: None,
                    resuming: None,
                    resumed: None,
                };
                return Some(SplicedBody {
                    inner: sync_wrapper::SyncStream::new(spliced),
                    remaining: range.end - range.start,
                });
            }
            Ok(Err(reason)) => tracing::debug!(volume = %source, %reason, "no spliceable answer"),
            Err(_) => tracing::debug!(volume = %source, "no answer within {stall:?}"),
        }
    }
    None
}

/// `http://host:port/path?query` as (`host:port`, `/path?query`).
fn split_location(location: &str) -> Option<(&str, &str)> {
    let rest = location.strip_prefix("http://")?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash..]))
}

/// One `GET` on a fresh connection, its head read and checked: the
/// status, length and range must be exactly the ones asked for.
async fn request(source: &str, target: &str, range: &Range<u64>, size: u64) -> Result<Upstream, String> {
    let mut tcp = TcpStream::connect(source)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let whole = *range == (0..size);
    let mut head =
        format!("GET {target} HTTP/1.1\r\nHost: {source}\r\nUser-Agent: trove-s3\r\nConnection: close\r\n");
    if !whole {
        head.push_str(&format!("Range: bytes={}-{}\r\n", range.start, range.end - 1));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        if tcp
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("cannot read: {e}"))?
            == 0
        {
            return Err("closed before its answer's head".into());
        }
        match parse_head(&buf, range, size, whole)? {
            Some(head_len) => {
                let mut leftover = buf.split_off(head_len).freeze();
                leftover.truncate((range.end - range.start) as usize);
                return Ok(Upstream { tcp, leftover });
            }
            None if buf.len() >= MAX_HEAD => return Err("an answer head over 64 KiB".into()),
            None => {}
        }
    }
}

/// The length of the head in `buf` once it is complete and is the answer
/// expected (`Ok(None)`: not complete yet).
fn parse_head(buf: &[u8], range: &Range<u64>, size: u64, whole: bool) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("a malformed answer: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    let want = if whole { 200 } else { 206 };
    if code != want {
        return Err(format!("answered {code}, not {want}"));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    if header("transfer-encoding").is_some() {
        return Err("a body without a length".into());
    }
    let len = range.end - range.start;
    if header("content-length").and_then(|v| v.parse::<u64>().ok()) != Some(len) {
        return Err(format!("not {len} bytes long"));
    }
    let expected_range = format!("bytes {}-{}/{size}", range.start, range.end - 1);
    if !whole && header("content-range") != Some(expected_range.as_str()) {
        return Err(format!("another range than {expected_range}"));
    }
    Ok(Some(head_len))
}

/// The body of a spliced GetObject: marker chunks for what went through
/// the pipe, ordinary chunks for what came with the head or after a
/// resumption.
struct Spliced {
    client: Client,
    key: String,
    /// The value being passed on.
    stat: Stat,
    upstream: Option<Upstream>,
    pipe: Arc<SplicePipe>,
    zc: ZeroCopy,
    /// The next byte to pass on, and the end of the range.
    pos: u64,
    end: u64,
    stall: Duration,
    /// Running while the volume sends nothing.
    stalled: Option<Pin<Box<Sleep>>>,
    /// The rest being asked for through `trove_client`, after the volume
    /// failed mid-way; then read from there.
    resuming: Option<BoxFuture<'static, trove_client::Result<GetStream>>>,
    resumed: Option<Outgoing>,
}

impl Spliced {
    /// The volume failed after its first byte: the rest comes from the
    /// ordinary path.
    fn resume(&mut self, why: String) {
        tracing::warn!(key = %self.stat.key, at = self.pos, reason = %why, "volume failed mid-way; reading the rest by range");
        self.upstream = None;
        self.stalled = None;
        let (client, key) = (self.client.clone(), self.key.clone());
        let opts = GetOptions {
            range: Some(ByteRange::Bounded {
                first: self.pos,
                last: self.end - 1,
            }),
            skip_sha256: true,
            ..Default::default()
        };
        self.resuming = Some(async move { client.get(&key, &opts).await }.boxed());
    }
}

impl Stream for Spliced {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(rest) = this.resumed.as_mut() {
                return Pin::new(rest).poll_next(cx);
            }
            if this.pos >= this.end {
                return Poll::Ready(None);
            }
            if let Some(resuming) = this.resuming.as_mut() {
                let stream = std::task::ready!(resuming.poll_unpin(cx));
                this.resuming = None;
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                };
                let now = stream.stat();
                if (now.sha256.as_str(), now.size, now.etag.as_str())
                    != (this.stat.sha256.as_str(), this.stat.size, this.stat.etag.as_str())
                {
                    let e = format!("{} was replaced while it was being read", this.stat.key);
                    tracing::warn!("{e}; answer cut short");
                    return Poll::Ready(Some(Err(e.into())));
                }
                this.resumed = Some(Outgoing::new(stream, this.end - this.pos));
                continue;
            }
            let upstream = this.upstream.as_mut().expect("reading from the volume");
            let want = this.end - this.pos;
            if !upstream.leftover.is_empty() {
                let chunk = upstream
                    .leftover
                    .split_to(upstream.leftover.len().min(want as usize));
                this.pos += chunk.len() as u64;
                return Poll::Ready(Some(Ok(chunk)));
            }
            let max = want.min(MAX_CHUNK as u64) as usize;
            match this.pipe.poll_fill(cx, &upstream.tcp, max) {
                Poll::Ready(Ok(0)) => this.resume("the answer ended early".into()),
                Poll::Ready(Ok(n)) => {
                    this.stalled = None;
                    this.pos += n as u64;
                    return Poll::Ready(Some(Ok(this.zc.pipe_chunk(&this.pipe, n))));
                }
                Poll::Ready(Err(e)) => this.resume(format!("connection broke: {e}")),
                Poll::Pending if this.pipe.queued() > 0 => {
                    // Waiting for our own client: not the volume's delay.
                    this.stalled = None;
                    return Poll::Pending;
                }
                Poll::Pending => {
                    let stall = this.stall;
                    let timer = this
                        .stalled
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.resume(format!("no bytes for {stall:?}"));
                }
            }
        }
    }
}

/// [`Spliced`] as s3s wants a body: `Sync`, with its exact length.
pub struct SplicedBody {
    inner: sync_wrapper::SyncStream<Spliced>,
    remaining: u64,
}

impl Stream for SplicedBody {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let poll = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &poll {
            self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
        }
        poll
    }
}

impl ByteStream for SplicedBody {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.remaining as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_into_volume_and_target() {
        assert_eq!(
            split_location("http://127.0.0.1:8001/b/k%20x?write=w1&sig=ab"),
            Some(("127.0.0.1:8001", "/b/k%20x?write=w1&sig=ab"))
        );
        assert_eq!(split_location("https://v:1/k"), None);
        assert_eq!(split_location("http://v:1"), None);
    }

    #[test]
    fn only_the_answer_asked_for_is_accepted() {
        let ok = b"HTTP/1.1 206 Partial Content\r\ncontent-length: 10\r\ncontent-range: bytes 5-14/100\r\n\r\nbody";
        let head_len = ok.len() - 4;
        assert_eq!(parse_head(ok, &(5..15), 100, false), Ok(Some(head_len)));
        assert_eq!(parse_head(&ok[..30], &(5..15), 100, false), Ok(None), "partial");
        // Another range, length, or status; a chunked body.
        assert!(parse_head(ok, &(6..16), 100, false)
            .unwrap_err()
            .contains("range"));
        assert!(parse_head(ok, &(5..16), 100, false).is_err());
        assert!(parse_head(ok, &(0..100), 100, true).unwrap_err().contains("206"));
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        assert_eq!(parse_head(whole, &(0..100), 100, true), Ok(Some(whole.len())));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100\r\n\r\n";
        assert!(parse_head(chunked, &(0..100), 100, true).is_err());
        let replaced = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_head(replaced, &(0..100), 100, true).is_err());
        assert!(parse_head(b"garbage\r\n\r\n", &(0..100), 100, true).is_err());
    }
}
