//! `GET`/`HEAD /<key>`: the blob's bytes, whole or one range (honouring
//! `If-Range`), streamed straight from a memory map of the file.

use crate::error::ApiError;
use crate::store::OpenBlob;
use crate::AppState;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use std::ops::Range;
use std::time::{Duration, UNIX_EPOCH};
use trove_common::http::{KEY_MD5, KEY_SHA256};
use trove_common::key::Key;
use trove_common::range::{if_range_matches, ByteRange, RangeError};

/// Size of the pieces the mapped file is handed to the socket in; small
/// enough that a slow reader applies back-pressure early.
const CHUNK: usize = 1 << 20;

pub async fn get(
    state: &AppState,
    key: Key,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let blob = tokio::task::spawn_blocking(move || store.open_blob(&key)).await??;
    if blob.meta.damaged {
        return Err(ApiError::Damaged);
    }
    let len = blob.meta.size;
    let etag = format!("\"{}\"", blob.meta.sha256);
    let last_modified = UNIX_EPOCH + Duration::from_millis(blob.meta.created);

    // A range of a value the client no longer has (its `If-Range` names
    // another version) would splice new bytes onto old ones: it gets the
    // whole current value instead. An `If-Range` that is not text matches
    // nothing.
    let current = headers.get(header::IF_RANGE).is_none_or(|v| {
        v.to_str()
            .is_ok_and(|v| if_range_matches(v, &etag, last_modified))
    });
    let range = match headers
        .get(header::RANGE)
        .filter(|_| current)
        .map(|v| v.to_str().map(ByteRange::parse))
    {
        None | Some(Err(_)) | Some(Ok(Err(RangeError::Malformed))) => None,
        Some(Ok(Err(e @ RangeError::Multiple))) => return Err(ApiError::Unsatisfiable(e.to_string())),
        Some(Ok(Ok(r))) => Some(r),
    };
    let (status, span) = match range {
        None => (StatusCode::OK, 0..len),
        Some(r) => match r.resolve(len) {
            Ok(span) => (StatusCode::PARTIAL_CONTENT, span),
            Err(e) => {
                return Ok(Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                    .body(Body::from(format!("{e}\n")))
                    .expect("valid response"))
            }
        },
    };

    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, span.end - span.start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(header::LAST_MODIFIED, httpdate::fmt_http_date(last_modified))
        .header(KEY_SHA256, &blob.meta.sha256);
    if !blob.meta.md5.is_empty() {
        resp = resp.header(KEY_MD5, &blob.meta.md5);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{len}", span.start, span.end - 1)).expect("ascii"),
        );
    }
    let body = if head_only {
        Body::empty()
    } else {
        mapped_body(blob, span)?
    };
    Ok(resp.body(body).expect("valid response"))
}

/// The bytes of `span` as a stream of slices of one memory map: no copy
/// into user space, and memory that the kernel can reclaim at any time.
fn mapped_body(blob: OpenBlob, span: Range<u64>) -> Result<Body, ApiError> {
    let len = (span.end - span.start) as usize;
    if len == 0 {
        return Ok(Body::empty());
    }
    // SAFETY: blob files are never modified in place: a replacement is a
    // rename of a new file and a delete is an unlink, and both leave this
    // mapping's inode intact. Only someone truncating the file by hand
    // could make a read fault.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(span.start)
            .len(len)
            .map(&blob.file)
    }
    .map_err(|e| ApiError::Internal(format!("cannot map blob: {e}")))?;
    let _ = map.advise(memmap2::Advice::Sequential);
    let bytes = Bytes::from_owner(map);
    let chunks = (0..len)
        .step_by(CHUNK)
        .map(move |start| Ok::<_, std::io::Error>(bytes.slice(start..(start + CHUNK).min(len))));
    Ok(Body::from_stream(futures::stream::iter(chunks)))
}
