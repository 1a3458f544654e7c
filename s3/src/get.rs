//! GetObject and HeadObject. S3 SDKs do not follow redirects, so the
//! gateway asks the master, then streams the bytes from a volume itself
//! (with the `Range`), one chunk at a time. The client library connects to
//! the volume before the answer's headers are written, and asks the master
//! again if the pinned copy was replaced in between, so the headers always
//! describe the bytes that follow.
//!
//! A value (or range) of [`splice::MIN_SPLICE`] bytes or more, asked for
//! on a connection that can send zero-copy chunks, is passed on inside
//! the kernel instead (see [`crate::splice`]); anything that path cannot
//! do falls back to this one.

use crate::error::s3;
use crate::gateway::{Conditions, Gateway, MetaOut, Verdict};
use crate::{etag, names, part, splice};
use bytes::Bytes;
use futures::Stream;
use s3s::dto::*;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Request, S3Response, S3Result, StdError};
use std::pin::Pin;
use std::task::{Context, Poll};
use trove_client::{ByteRange, GetOptions, GetStream, Stat};
use trove_common::server::ZeroCopy;

/// Bytes gathered from the volume's stream before one write to the S3
/// client: the volume's answer arrives in small reads, and writing each
/// on its own costs a system call and a task wake-up per few KiB.
const OUT_CHUNK: usize = 128 * 1024;

/// A value's bytes on their way out, with their exact length (so the
/// answer has a `Content-Length`), in chunks of up to [`OUT_CHUNK`].
pub(crate) struct Outgoing {
    inner: sync_wrapper::SyncStream<GetStream>,
    remaining: u64,
    /// An error seen after bytes that were gathered: sent next.
    failed: Option<trove_client::Error>,
}

impl Outgoing {
    /// The `remaining` bytes of `stream`.
    pub(crate) fn new(stream: GetStream, remaining: u64) -> Outgoing {
        Outgoing {
            inner: sync_wrapper::SyncStream::new(stream),
            remaining,
            failed: None,
        }
    }
}

impl Stream for Outgoing {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(cut_short(e))));
        }
        let mut gathered: Option<bytes::BytesMut> = None;
        let mut first: Option<Bytes> = None;
        let mut ended = false;
        loop {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
                    match (&mut first, &mut gathered) {
                        (None, None) => first = Some(chunk),
                        (Some(f), None) => {
                            let mut buf =
                                bytes::BytesMut::with_capacity(OUT_CHUNK.max(f.len() + chunk.len()));
                            buf.extend_from_slice(f);
                            buf.extend_from_slice(&chunk);
                            first = None;
                            gathered = Some(buf);
                        }
                        (_, Some(buf)) => buf.extend_from_slice(&chunk),
                    }
                    let len = first
                        .as_ref()
                        .map(Bytes::len)
                        .or(gathered.as_ref().map(|b| b.len()));
                    if len.unwrap_or(0) >= OUT_CHUNK {
                        break;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    if first.is_none() && gathered.is_none() {
                        return Poll::Ready(Some(Err(cut_short(e))));
                    }
                    this.failed = Some(e);
                    break;
                }
                Poll::Ready(None) => {
                    ended = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        match (first, gathered) {
            (Some(f), _) => Poll::Ready(Some(Ok(f))),
            (None, Some(buf)) => Poll::Ready(Some(Ok(buf.freeze()))),
            (None, None) if ended => Poll::Ready(None),
            // Nothing gathered and the inner stream is pending: it has
            // registered the waker.
            (None, None) => Poll::Pending,
        }
    }
}

/// A read that failed after the answer's headers were sent: all that is
/// left is to cut the body short, which the client sees as an error.
fn cut_short(e: trove_client::Error) -> StdError {
    tracing::warn!(error = %e, "read failed mid-way");
    Box::new(e)
}

impl ByteStream for Outgoing {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.remaining as usize)
    }
}

fn byte_range(r: &Range) -> ByteRange {
    match *r {
        Range::Int {
            first,
            last: Some(last),
        } => ByteRange::Bounded { first, last },
        Range::Int { first, last: None } => ByteRange::From(first),
        Range::Suffix { length } => ByteRange::Suffix(length),
    }
}

fn verdict(conds: &Conditions, stat: &Stat) -> S3Result<()> {
    match conds.evaluate(&stat.etag, stat.last_modified) {
        Verdict::Proceed => Ok(()),
        Verdict::Failed => Err(s3_error!(
            PreconditionFailed,
            "a condition of the request does not hold"
        )),
        Verdict::NotModified => {
            let mut e = s3_error!(NotModified);
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", stat.etag)) {
                headers.insert(http::header::ETAG, v);
            }
            e.set_headers(headers);
            Err(e)
        }
    }
}

/// The master's record of `key`: with part `part`'s range when asked.
async fn stat_of(gw: &Gateway, key: &str, part: Option<u32>) -> trove_client::Result<Stat> {
    match part {
        Some(n) => gw.client.stat_part(key, n).await,
        None => gw.client.stat(key).await,
    }
}

fn not_found(e: trove_client::Error) -> s3s::S3Error {
    if e.is_not_found() {
        s3_error!(NoSuchKey, "the object does not exist")
    } else {
        s3(e)
    }
}

pub async fn get_object(
    gw: &Gateway,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = &req.input;
    let key = names::object_key(&input.bucket, &input.key)?;
    let part_number = part::requested(input.part_number, input.range.is_some())?;
    let mut opts = GetOptions {
        range: input.range.as_ref().map(byte_range),
        // The answer's headers are sent before the last byte is read: a
        // mismatch found then could only cut the body short, which the
        // volume's block CRCs already do for a damaged copy.
        skip_sha256: true,
        ..Default::default()
    };
    // The master first (a HEAD: the same redirect a GET gets), so that the
    // size is known before choosing how to pass the bytes on.
    let stat = match stat_of(gw, &key, part_number).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            gw.need_bucket(&input.bucket).await?;
            return Err(not_found(e));
        }
        Err(e) => return Err(s3(e)),
    };
    let conditions = Conditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    // Before any volume is asked (and again below, should the value have
    // been replaced in between).
    verdict(&conditions, &stat)?;
    let part = part_number.map(|n| part::resolve(&stat, n)).transpose()?;
    if let Some(p) = &part {
        if p.range.is_empty() {
            return Ok(S3Response::new(empty_part(&stat, p)));
        }
        opts.range = Some(ByteRange::Bounded {
            first: p.range.start,
            last: p.range.end - 1,
        });
    }
    let resolved_write = stat.write.clone();
    let zero_copy = req.extensions.get::<ZeroCopy>().cloned();
    let wanted = match opts.range {
        None => Some(0..stat.size),
        Some(r) => r.resolve(stat.size).ok(),
    };
    let spliced = match (zero_copy, wanted) {
        (Some(zc), Some(range)) if range.end - range.start >= splice::MIN_SPLICE => {
            splice::open(&gw.client, &key, &stat, range.clone(), zc)
                .await
                .map(|body| (range, body))
        }
        _ => None,
    };
    let (stat, range, body) = match spliced {
        Some((range, body)) => (stat, range, StreamingBlob::new(body)),
        None => {
            let stream = match gw.client.get_located(&key, stat, &opts).await {
                Ok(s) => s,
                Err(e) if e.is_not_found() => {
                    gw.need_bucket(&input.bucket).await?;
                    return Err(not_found(e));
                }
                Err(e) => return Err(s3(e)),
            };
            // A part's range holds only for the value it was resolved
            // against: replaced since, the client is told to try again.
            if part.is_some() && stream.stat().write != resolved_write {
                return Err(s3_error!(
                    SlowDown,
                    "the object was replaced while being read; retry"
                ));
            }
            let range = stream.range();
            let stat = stream.stat().clone();
            let len = range.end - range.start;
            (stat, range, StreamingBlob::new(Outgoing::new(stream, len)))
        }
    };
    verdict(&conditions, &stat)?;
    let len = range.end - range.start;
    let content_range = (input.range.is_some() || part.is_some()).then(|| {
        format!(
            "bytes {}-{}/{}",
            range.start,
            range.end.saturating_sub(1),
            stat.size
        )
    });
    let meta = MetaOut::from_pairs(&stat.meta);
    Ok(S3Response::new(GetObjectOutput {
        body: Some(body),
        content_length: Some(len as i64),
        content_range,
        parts_count: part.and_then(|p| p.count),
        accept_ranges: Some("bytes".into()),
        e_tag: Some(etag::dto(&stat.etag)),
        last_modified: stat.last_modified.map(Timestamp::from),
        content_type: input.response_content_type.clone().or(meta.content_type),
        content_disposition: input
            .response_content_disposition
            .clone()
            .or(meta.content_disposition),
        cache_control: input.response_cache_control.clone().or(meta.cache_control),
        content_encoding: input.response_content_encoding.clone().or(meta.content_encoding),
        content_language: input.response_content_language.clone().or(meta.content_language),
        expires: input.response_expires.clone().or(meta.expires),
        metadata: meta.metadata,
        ..Default::default()
    }))
}

pub async fn head_object(
    gw: &Gateway,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = &req.input;
    let key = names::object_key(&input.bucket, &input.key)?;
    let part_number = part::requested(input.part_number, input.range.is_some())?;
    let stat = match stat_of(gw, &key, part_number).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            gw.need_bucket(&input.bucket).await?;
            return Err(not_found(e));
        }
        Err(e) => return Err(s3(e)),
    };
    verdict(
        &Conditions {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
        },
        &stat,
    )?;
    let part = part_number.map(|n| part::resolve(&stat, n)).transpose()?;
    let (len, content_range) = match (&input.range, &part) {
        (_, Some(p)) => (p.range.end - p.range.start, p.content_range(stat.size)),
        (None, None) => (stat.size, None),
        (Some(r), None) => {
            let r = byte_range(r)
                .resolve(stat.size)
                .map_err(|_| s3_error!(InvalidRange, "the object has {} bytes", stat.size))?;
            (
                r.end - r.start,
                Some(format!(
                    "bytes {}-{}/{}",
                    r.start,
                    r.end.saturating_sub(1),
                    stat.size
                )),
            )
        }
    };
    let meta = MetaOut::from_pairs(&stat.meta);
    Ok(S3Response::new(HeadObjectOutput {
        content_length: Some(len as i64),
        content_range,
        parts_count: part.and_then(|p| p.count),
        accept_ranges: Some("bytes".into()),
        e_tag: Some(etag::dto(&stat.etag)),
        last_modified: stat.last_modified.map(Timestamp::from),
        content_type: input.response_content_type.clone().or(meta.content_type),
        content_disposition: input
            .response_content_disposition
            .clone()
            .or(meta.content_disposition),
        cache_control: input.response_cache_control.clone().or(meta.cache_control),
        content_encoding: input.response_content_encoding.clone().or(meta.content_encoding),
        content_language: input.response_content_language.clone().or(meta.content_language),
        expires: input.response_expires.clone().or(meta.expires),
        metadata: meta.metadata,
        ..Default::default()
    }))
}

/// The answer to a `partNumber` read of an empty part (of an empty
/// object): no bytes and no range, nothing to ask a volume for.
fn empty_part(stat: &Stat, part: &part::Part) -> GetObjectOutput {
    let meta = MetaOut::from_pairs(&stat.meta);
    GetObjectOutput {
        body: Some(StreamingBlob::from(s3s::Body::empty())),
        content_length: Some(0),
        parts_count: part.count,
        accept_ranges: Some("bytes".into()),
        e_tag: Some(etag::dto(&stat.etag)),
        last_modified: stat.last_modified.map(Timestamp::from),
        content_type: meta.content_type,
        metadata: meta.metadata,
        ..Default::default()
    }
}
