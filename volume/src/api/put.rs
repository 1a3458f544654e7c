//! `PUT /<key>`: stream the body into a durable blob. It starts *pending*;
//! the master marks it live once every replica has it (`POST /-/mark`).
//!
//! The volume does not hash a master write's sha256 (unless `Key-Sha256`
//! announces one to check): it answers the CRC32C of the bytes it stored
//! (`Key-Crc32c`), the master compares it with the CRC32C of what it sent,
//! and the confirming mark brings the sha256 the master computed.

use crate::error::ApiError;
use crate::store::{blocks, Expected};
use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use trove_common::digest::{crc32c_hex, parse_sha256_hex};
use trove_common::http::{
    content_length, meta_from_headers, valid_write_id, KEY_CRC32C, KEY_MD5, KEY_SHA256, KEY_SIZE,
    TROVE_REPLACES, TROVE_WRITE,
};
use trove_common::key::Key;
use trove_common::record::{BlobMeta, BlobState};

pub async fn put(state: &AppState, key: Key, req: Request<Body>) -> Result<Response, ApiError> {
    let expected_len = content_length(req.headers()).map_err(|e| ApiError::BadRequest(e.into()))?;
    let expected_sha256 = match req.headers().get(KEY_SHA256) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(parse_sha256_hex)
                .ok_or_else(|| ApiError::BadRequest("Key-Sha256 must be 64 hex digits".into()))?,
        ),
        None => None,
    };
    let write = write_header(req.headers(), TROVE_WRITE)?;
    let replaces = write_header(req.headers(), TROVE_REPLACES)?;
    let meta = meta_from_headers(req.headers()).map_err(ApiError::BadRequest)?;
    let body = req.into_body().into_data_stream();
    let expected = Expected {
        len: expected_len,
        sha256: expected_sha256,
        hash_sha256: false,
        state: BlobState::Pending,
        md5: None,
        write,
        replaces,
        copy_of: None,
        meta,
        created: None,
    };
    let meta = state
        .store
        .write_stream(&key, body, expected, state.config.timeouts.stall)
        .await?;
    tracing::debug!(key = %key, size = meta.size, "stored");
    Ok(stored(meta))
}

/// A write id from header `name` (`Trove-Write`, `Trove-Replaces`), if sent.
pub(crate) fn write_header(headers: &axum::http::HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    match headers.get(name) {
        Some(v) => Ok(Some(
            v.to_str()
                .ok()
                .filter(|w| valid_write_id(w))
                .map(str::to_string)
                .ok_or_else(|| ApiError::BadRequest(format!("{name} must be 1-64 letters, digits or -")))?,
        )),
        None => Ok(None),
    }
}

/// `201` with the size and CRC32C of what was stored (and its sha256 and
/// md5, when the volume knows them).
pub(crate) fn stored(meta: BlobMeta) -> Response {
    let mut resp = (StatusCode::CREATED, [(KEY_SIZE, meta.size.to_string())]).into_response();
    digest_headers(resp.headers_mut(), &meta);
    resp
}

/// `Key-Crc32c`, and `Key-Sha256` and `Key-Md5` when known, of a blob.
pub(crate) fn digest_headers(headers: &mut HeaderMap, meta: &BlobMeta) {
    let crc = meta
        .crc32c
        .as_deref()
        .and_then(|sums| blocks::whole(sums, meta.size));
    for (name, value) in [
        (KEY_CRC32C, crc.map(crc32c_hex).unwrap_or_default()),
        (KEY_SHA256, meta.sha256.clone()),
        (KEY_MD5, meta.md5.clone()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            if !value.is_empty() {
                headers.insert(name, v);
            }
        }
    }
}
