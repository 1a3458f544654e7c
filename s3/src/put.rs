//! PutObject: the body streams through [`Checked`] (checksums verified,
//! last chunk held back) to the master as a replacing write, with the
//! object's metadata; the ETag is the master's (the hex md5).

use crate::checksum::{BodyError, Checked, Expected};
use crate::error::s3;
use crate::gateway::Gateway;
use crate::{etag, names};
use base64::Engine;
use futures::StreamExt;
use parking_lot::Mutex;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use trove_client::{PutOptions, Written};

/// A write that finds another write of its key in flight (`409`) is
/// tried this often in all, while its body can still be sent again.
const CONFLICT_ATTEMPTS: u32 = 8;

/// The head of an upload body kept for a retry: a body the master refused
/// before more than this was pulled from it can be sent again.
const REPLAY_LIMIT: usize = 1024 * 1024;

/// The upload body's source and the chunks of it kept for a retry.
struct Kept {
    source: futures::stream::BoxStream<'static, Result<bytes::Bytes, BodyError>>,
    chunks: Vec<bytes::Bytes>,
    bytes: usize,
    /// More than [`REPLAY_LIMIT`] was pulled: the body cannot be sent again.
    overflowed: bool,
    /// The attempt allowed to pull from the source; earlier ones are cut.
    attempt: u32,
}

/// One attempt's view of an upload body: the kept chunks first, then the
/// rest of the source (keeping it while it stays under the limit).
struct Replay {
    state: Arc<Mutex<Kept>>,
    attempt: u32,
    /// The next kept chunk this attempt sends.
    next: usize,
}

impl futures::Stream for Replay {
    type Item = Result<bytes::Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut st = this.state.lock();
        if st.attempt != this.attempt {
            return Poll::Ready(Some(Err(BodyError::Source(
                "a retry took over this upload".into(),
            ))));
        }
        if !st.overflowed && this.next < st.chunks.len() {
            let chunk = st.chunks[this.next].clone();
            this.next += 1;
            return Poll::Ready(Some(Ok(chunk)));
        }
        let item = st.source.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &item {
            if !st.overflowed && st.bytes + chunk.len() <= REPLAY_LIMIT {
                st.bytes += chunk.len();
                st.chunks.push(chunk.clone());
                this.next += 1;
            } else {
                st.overflowed = true;
                st.chunks = vec![];
            }
        }
        item
    }
}

/// Streams an upload body to `key`. Shared by PutObject and UploadPart.
pub(crate) async fn stream_to(
    gw: &Gateway,
    key: &str,
    body: Option<StreamingBlob>,
    len: Option<i64>,
    expected: Expected,
    mut opts: PutOptions,
) -> S3Result<(Written, Checksum)> {
    let verified = Arc::clone(&expected.verified);
    opts.replace = true;
    opts.allow_empty = true;
    let len = match len {
        Some(n) if n < 0 => return Err(s3_error!(InvalidArgument, "negative Content-Length")),
        Some(n) => Some(n as u64),
        None => None,
    };
    let body = body.unwrap_or_else(|| {
        StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
    });
    let mut checked = Checked::new(body, expected);
    let written = if len == Some(0) {
        // An empty body might never be polled by the HTTP client: check it
        // completely before anything is sent.
        while let Some(item) = checked.next().await {
            item.map_err(body_error)?;
        }
        gw.client.put_bytes(key, bytes::Bytes::new(), &opts).await
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        // Remember why the body failed, to answer with the right S3 error
        // rather than the master's view of a cut-off upload.
        let checked = checked.map(move |item| {
            if let Err(e) = &item {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(e.to_string());
                }
            }
            item
        });
        let shared = Arc::new(Mutex::new(Kept {
            source: checked.boxed(),
            chunks: vec![],
            bytes: 0,
            overflowed: false,
            attempt: 0,
        }));
        let mut attempt = 0;
        let result = loop {
            let body = Replay {
                state: Arc::clone(&shared),
                attempt,
                next: 0,
            };
            let result = gw.client.put_stream(key, body, len, &opts).await;
            // The HTTP client may go on pulling an answered request's body:
            // retire this attempt's view before deciding anything.
            let overflowed = {
                let mut st = shared.lock();
                st.attempt += 1;
                st.overflowed
            };
            attempt += 1;
            let again = matches!(result, Err(trove_client::Error::Conflict { .. }))
                && attempt < CONFLICT_ATTEMPTS
                && !overflowed;
            if !again {
                break result;
            }
            // Another write of the key holds it (the master answers that
            // before it reads the body): wait, then send the same body.
            tokio::time::sleep(gw.client.retry_policy().backoff(attempt)).await;
        };
        if result.is_err() {
            let mut rx = rx;
            if let Ok(reason) = rx.try_recv() {
                return Err(body_error_text(reason));
            }
        }
        if let Err(trove_client::Error::Io { source, .. }) = &result {
            // Only the body is read here: it was not the length announced
            // (`Content-Length`, or an aws-chunked body's
            // `x-amz-decoded-content-length`), the client's mistake.
            return Err(body_error_text(source.to_string()));
        }
        result
    };
    let mut written = written.map_err(s3)?;
    if written.etag.is_none() {
        // A master that does not report the ETag: it is the md5.
        let stat = gw.client.stat(key).await.map_err(s3)?;
        written.etag = Some(stat.etag);
    }
    // The checksums the body matched (none sent: none computed).
    Ok((written, verified.get().cloned().unwrap_or_default()))
}

fn body_error(e: crate::checksum::BodyError) -> s3s::S3Error {
    body_error_text(e.to_string())
}

fn body_error_text(reason: String) -> s3s::S3Error {
    if reason.contains("checksum") || reason.contains("trailer") {
        s3_error!(BadDigest, "{reason}")
    } else if reason.to_ascii_lowercase().contains("signature") {
        s3_error!(SignatureDoesNotMatch, "{reason}")
    } else {
        s3_error!(
            IncompleteBody,
            "the upload body failed: {reason}; nothing was stored"
        )
    }
}

/// `Content-MD5` (base64 of 16 bytes), or `InvalidDigest`.
pub(crate) fn content_md5(value: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    let Some(v) = value else { return Ok(None) };
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
        .and_then(|raw| <[u8; 16]>::try_from(raw).ok())
        .map(Some)
        .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not the base64 of 16 bytes"))
}

pub async fn put_object(
    gw: &Gateway,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let key = names::object_key(&input.bucket, &input.key)?;
    if let Some(offset) = input.write_offset_bytes {
        // S3's append (`x-amz-write-offset-bytes`) is for directory
        // buckets only; taken as a plain PUT it would replace the object.
        return Err(s3_error!(
            NotImplemented,
            "appending to an object (x-amz-write-offset-bytes: {offset}) is not supported; nothing was stored"
        ));
    }
    gw.need_bucket(&input.bucket).await?;
    let meta = meta_in!(input).pairs()?;
    // Conditional writes: the master checks them under the key's lock.
    let opts = PutOptions {
        content_md5: content_md5(input.content_md5.as_deref())?,
        meta,
        ..etag::destination_conditions(input.if_match.as_ref(), input.if_none_match.as_ref())
    };
    let expected = Expected::new(checksums_of!(input), &headers, trailing_headers);
    let (written, verified) = stream_to(gw, &key, input.body, input.content_length, expected, opts).await?;
    Ok(S3Response::new(with_checksums!(
        PutObjectOutput {
            e_tag: written.etag.as_deref().map(etag::dto),
        },
        verified
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(chunks: &[&'static str]) -> Arc<Mutex<Kept>> {
        let items: Vec<Result<bytes::Bytes, BodyError>> = chunks
            .iter()
            .map(|c| Ok(bytes::Bytes::from_static(c.as_bytes())))
            .collect();
        Arc::new(Mutex::new(Kept {
            source: futures::stream::iter(items).boxed(),
            chunks: vec![],
            bytes: 0,
            overflowed: false,
            attempt: 0,
        }))
    }

    #[tokio::test]
    async fn a_refused_attempt_is_replayed_whole_and_cut_off() {
        let state = kept(&["ab", "cd", "ef"]);
        let mut first = Replay {
            state: Arc::clone(&state),
            attempt: 0,
            next: 0,
        };
        assert_eq!(first.next().await.unwrap().unwrap(), "ab");
        // The master answered 409: the next attempt takes over.
        state.lock().attempt = 1;
        assert!(
            first.next().await.unwrap().is_err(),
            "the old attempt pulls no more"
        );
        let second = Replay {
            state: Arc::clone(&state),
            attempt: 1,
            next: 0,
        };
        let got: Vec<_> = second.map(Result::unwrap).collect().await;
        assert_eq!(got, [b"ab", b"cd", b"ef"].map(|b| bytes::Bytes::from_static(b)));
        assert!(!state.lock().overflowed);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_cannot_be_replayed() {
        let big: &'static str = Box::leak("x".repeat(REPLAY_LIMIT + 1).into_boxed_str());
        let state = kept(&[big]);
        let mut first = Replay {
            state: Arc::clone(&state),
            attempt: 0,
            next: 0,
        };
        assert_eq!(first.next().await.unwrap().unwrap().len(), REPLAY_LIMIT + 1);
        assert!(state.lock().overflowed);
    }
}
