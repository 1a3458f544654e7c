//! `PUT`/`POST /key`: parse what the client announced (length, the
//! `Content-MD5`, `Key-Sha256` and `Key-Crc32c` to check the body
//! against — the last possibly as a trailer of a chunked body), asked for
//! (`Trove-Replace`, `Trove-Allow-Empty`, `If-Match`/`If-None-Match`, a
//! TTL) and gave the value
//! (metadata), then hand the body to the write path.

use crate::error::ApiError;
use crate::write::{self, Committed, SentCrc32c, Source, Upload};
use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use trove_common::conditions::Preconditions;
use trove_common::digest::{crc32c_hex, parse_content_md5, parse_crc32c_hex, parse_sha256_hex};
use trove_common::http::{
    content_length, flag, meta_from_headers, quoted_etag, CONTENT_MD5, KEY_CRC32C, KEY_SHA256, KEY_WRITE,
    TROVE_ALLOW_EMPTY, TROVE_LENGTH, TROVE_REPLACE,
};
use trove_common::key::Key;

/// A body sent without a length (chunked) that turns out empty is refused
/// like an announced `Content-Length: 0`, before the key is locked or any
/// volume is asked (else its failed write would be cleaned up in the
/// background, holding the key for a moment after the `411`): its first
/// bytes are read here and handed on with the rest.
async fn refuse_if_empty(body: Body, stall: Duration) -> Result<Body, ApiError> {
    let mut stream = body.into_data_stream();
    loop {
        match tokio::time::timeout(stall, stream.next()).await {
            Err(_) => return Err(ApiError::ClientStalled(stall)),
            Ok(None) => return Err(ApiError::EmptyBody),
            Ok(Some(Err(e))) => return Err(ApiError::ClientBody(e.to_string())),
            Ok(Some(Ok(chunk))) if chunk.is_empty() => {}
            Ok(Some(Ok(chunk))) => {
                let first = futures::stream::once(async move { Ok(chunk) });
                return Ok(Body::from_stream(first.chain(stream)));
            }
        }
    }
}

/// The body's length: its `Content-Length`, or the `Trove-Length` of a
/// chunked body (never both).
fn announced_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let content = content_length(headers).map_err(|e| ApiError::BadRequest(e.into()))?;
    let trove = one_header(headers, TROVE_LENGTH, "Trove-Length")?
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest("Trove-Length is not a number of bytes".into()))
        })
        .transpose()?;
    match (content, trove) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "Trove-Length is for chunked bodies: send it or Content-Length, not both".into(),
        )),
        (content, trove) => Ok(content.or(trove)),
    }
}

/// Whether the request's `Trailer` header names `name`.
pub(crate) fn trailer_announced(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| n.trim().eq_ignore_ascii_case(name))
}

/// Passes `body` on, keeping the value of its `Key-Crc32c` trailer in
/// `slot` when the trailer arrives (the write checks it once the body
/// has ended, before committing anything). A chunked body is always
/// watched: a trailer sent unannounced is checked too.
fn catch_crc32c_trailer(body: Body, slot: Arc<OnceLock<Result<u32, String>>>) -> Body {
    use http_body_util::{BodyStream, StreamBody};
    let frames = BodyStream::new(body).map(move |frame| {
        if let Some(trailers) = frame.as_ref().ok().and_then(|f| f.trailers_ref()) {
            let mut values = trailers.get_all(KEY_CRC32C).iter();
            if let Some(value) = values.next() {
                let parsed = if values.next().is_some() {
                    Err("the Key-Crc32c trailer was sent more than once; send it once; nothing was stored")
                } else {
                    (value.to_str().ok().and_then(parse_crc32c_hex))
                        .ok_or("the Key-Crc32c trailer is not 8 hex digits; nothing was stored")
                };
                let _ = slot.set(parsed.map_err(str::to_string));
            }
        }
        frame
    });
    Body::new(StreamBody::new(frames))
}

pub async fn put(state: Arc<AppState>, key: Key, req: Request<Body>) -> Result<Response, ApiError> {
    let headers = req.headers();
    let len = announced_length(headers)?;
    let mut upload = upload(&state, headers)?;
    if len == Some(0) && !upload.allow_empty {
        return Err(ApiError::EmptyBody);
    }
    upload.len = len;
    // hyper drops a `Content-Length` sent beside chunked framing: with
    // one, the body is not chunked and can carry no trailer.
    let chunked = !headers.contains_key(header::CONTENT_LENGTH);
    let announced = trailer_announced(headers, KEY_CRC32C);
    if announced && !matches!(upload.key_crc32c, SentCrc32c::None) {
        return Err(ApiError::BadRequest(
            "Key-Crc32c was sent as a header and announced as a trailer; send it once".into(),
        ));
    }
    if announced && !chunked {
        return Err(ApiError::BadRequest(
            "a Key-Crc32c trailer can only follow a chunked body: send the length as \
             Trove-Length, or the CRC32C as a header"
                .into(),
        ));
    }
    let mut body = req.into_body();
    if chunked && matches!(upload.key_crc32c, SentCrc32c::None) {
        let slot = Arc::new(OnceLock::new());
        body = catch_crc32c_trailer(body, Arc::clone(&slot));
        upload.key_crc32c = SentCrc32c::Trailer { slot, announced };
    }
    if len.is_none() && !upload.allow_empty {
        body = refuse_if_empty(body, state.volumes.client().timeouts().stall).await?;
    }
    // The write runs in its own task so that a client hanging up cannot
    // cancel it half-way: it always finishes or cleans up after itself.
    let committed = tokio::spawn(write::write(state, key.clone(), upload, Source::Body(body))).await??;
    let record = &committed.record;
    tracing::debug!(key = %key, size = record.size, volumes = ?record.volumes, "stored");
    Ok(created(&committed))
}

/// What a write's headers ask of it (all but the body's length): shared
/// by a PUT and a compose.
pub(crate) fn upload(state: &AppState, headers: &HeaderMap) -> Result<Upload, ApiError> {
    let replace = flag(headers, TROVE_REPLACE).map_err(ApiError::BadRequest)?;
    let allow_empty = flag(headers, TROVE_ALLOW_EMPTY).map_err(ApiError::BadRequest)?;
    let meta = meta_from_headers(headers).map_err(ApiError::BadRequest)?;
    let content_md5 = one_header(headers, CONTENT_MD5, "Content-MD5")?
        .map(|s| parse_content_md5(s).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()?;
    let key_sha256 = one_header(headers, KEY_SHA256, "Key-Sha256")?
        .map(|s| {
            parse_sha256_hex(s).ok_or_else(|| ApiError::BadRequest("Key-Sha256 must be 64 hex digits".into()))
        })
        .transpose()?;
    let key_crc32c = match one_header(headers, KEY_CRC32C, "Key-Crc32c")? {
        None => SentCrc32c::None,
        Some(v) => SentCrc32c::Header(
            parse_crc32c_hex(v)
                .ok_or_else(|| ApiError::BadRequest("Key-Crc32c must be 8 hex digits".into()))?,
        ),
    };
    let expires =
        crate::expiry::requested(headers, state.config.default_ttl, trove_common::record::now_ms())?;
    let preconditions = Preconditions::for_change(headers).map_err(ApiError::BadRequest)?;
    Ok(Upload {
        len: None,
        content_md5,
        key_sha256,
        key_crc32c,
        expires,
        replace,
        allow_empty,
        preconditions,
        meta,
        parts: vec![],
    })
}

/// The `201` of a write: the value's ETag, sha256, CRC32C and write id.
pub(crate) fn created(committed: &Committed) -> Response {
    let record = &committed.record;
    let mut resp = (
        StatusCode::CREATED,
        [
            (header::ETAG.as_str(), quoted_etag(record.etag())),
            (KEY_SHA256, record.sha256.clone()),
            (KEY_CRC32C, crc32c_hex(committed.crc32c)),
        ],
    )
        .into_response();
    if let Some(write) = record.write.as_deref().and_then(|w| w.parse().ok()) {
        resp.headers_mut().insert(KEY_WRITE, write);
    }
    resp
}

/// The value of a header that may be sent at most once: two checksums
/// could disagree, and checking only one would let the other pass unseen.
fn one_header<'a>(headers: &'a HeaderMap, name: &str, shown: &str) -> Result<Option<&'a str>, ApiError> {
    trove_common::http::single(headers, name, shown).map_err(ApiError::BadRequest)
}
