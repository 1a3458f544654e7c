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

use crate::error::{invalid_range, s3};
use crate::gateway::{Conditions, Gateway, MetaOut};
use crate::{etag, names, part, splice};
use bytes::Bytes;
use futures::Stream;
use s3s::dto::*;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Request, S3Response, S3Result, StdError};
use std::pin::Pin;
use std::task::{Context, Poll};
use trove_client::{ByteRange, GetOptions, GetStream, Stat};
use trove_common::conditions::ReadVerdict;
use trove_common::server::ZeroCopy;

/// Bytes gathered from the volume's stream before one write to the S3
/// client: the volume's answer arrives in small reads, and writing each
/// on its own costs a system call and a task wake-up per few KiB.
const OUT_CHUNK: usize = 128 * 1024;

/// The type of an object stored without one, as AWS answers it.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The conditional headers of a GetObject or HeadObject input (the two
/// have the same fields).
macro_rules! conditions {
    ($input:expr) => {
        Conditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}

/// A GetObject or HeadObject answer: what both say of the object `$stat`
/// describes (ETag, time, metadata, with the input's `response-*`
/// overrides applied), and the fields given.
macro_rules! described {
    ($output:ident, $input:expr, $stat:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let (input, stat) = (&$input, &$stat);
        let meta = MetaOut::from_pairs(&stat.meta);
        $output {
            $($field: $value,)*
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag::dto(&stat.etag)),
            last_modified: stat.last_modified.map(Timestamp::from),
            content_type: input
                .response_content_type
                .clone()
                .or(meta.content_type)
                .or_else(|| Some(DEFAULT_CONTENT_TYPE.into())),
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
        }
    }};
}

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
    match conds.check(&stat.etag, stat.last_modified) {
        ReadVerdict::Serve => Ok(()),
        ReadVerdict::Failed(why) => Err(s3_error!(PreconditionFailed, "{why}")),
        ReadVerdict::NotModified => {
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

/// The master's record of `key` in `bucket`: with part `part`'s range
/// when asked.
async fn stat_of(gw: &Gateway, bucket: &str, key: &str, part: Option<u32>) -> S3Result<Stat> {
    let stat = match part {
        Some(n) => gw.client.stat_part(key, n).await,
        None => gw.client.stat(key).await,
    };
    match stat {
        Ok(stat) => Ok(stat),
        Err(e) => Err(read_error(gw, bucket, e).await),
    }
}

/// S3's answer to a read that failed with `e`: for a missing object,
/// `NoSuchBucket` when its bucket is missing too, else `NoSuchKey`.
async fn read_error(gw: &Gateway, bucket: &str, e: trove_client::Error) -> s3s::S3Error {
    if !e.is_not_found() {
        return s3(e);
    }
    match gw.need_bucket(bucket).await {
        Ok(()) => s3_error!(NoSuchKey, "the object does not exist"),
        Err(no_bucket) => no_bucket,
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
    let stat = stat_of(gw, &input.bucket, &key, part_number).await?;
    let conditions = conditions!(input);
    // Before any volume is asked (and again below, should the value have
    // been replaced in between).
    verdict(&conditions, &stat)?;
    let part = part_number.map(|n| part::resolve(&stat, n)).transpose()?;
    if let Some(p) = &part {
        if p.range.is_empty() {
            // An empty part (of an empty object): nothing to ask a volume for.
            return Ok(S3Response::new(described!(GetObjectOutput, input, stat, {
                body: Some(StreamingBlob::from(s3s::Body::empty())),
                content_length: Some(0),
                parts_count: p.count,
            })));
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
                Err(e) => return Err(read_error(gw, &input.bucket, e).await),
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
    let range_header = (input.range.is_some() || part.is_some())
        .then(|| part::content_range(&range, stat.size))
        .flatten();
    Ok(S3Response::new(described!(GetObjectOutput, input, stat, {
        body: Some(body),
        content_length: Some((range.end - range.start) as i64),
        content_range: range_header,
        parts_count: part.and_then(|p| p.count),
    })))
}

pub async fn head_object(
    gw: &Gateway,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = &req.input;
    let key = names::object_key(&input.bucket, &input.key)?;
    let part_number = part::requested(input.part_number, input.range.is_some())?;
    let stat = stat_of(gw, &input.bucket, &key, part_number).await?;
    verdict(&conditions!(input), &stat)?;
    let part = part_number.map(|n| part::resolve(&stat, n)).transpose()?;
    let range = match (&input.range, &part) {
        (_, Some(p)) => p.range.clone(),
        (None, None) => 0..stat.size,
        (Some(r), None) => byte_range(r)
            .resolve(stat.size)
            .map_err(|_| invalid_range(stat.size))?,
    };
    let range_header = (input.range.is_some() || part.is_some())
        .then(|| part::content_range(&range, stat.size))
        .flatten();
    Ok(S3Response::new(described!(HeadObjectOutput, input, stat, {
        content_length: Some((range.end - range.start) as i64),
        content_range: range_header,
        parts_count: part.and_then(|p| p.count),
    })))
}
