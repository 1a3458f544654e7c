//! `PUT /<key>`: stream the body into a durable blob. It starts *pending*;
//! the master marks it live once every replica has it (`POST /-/mark`).

use crate::error::ApiError;
use crate::store::Expected;
use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use trove_common::digest::parse_sha256_hex;
use trove_common::http::{
    content_length, meta_from_headers, valid_write_id, KEY_MD5, KEY_SHA256, KEY_SIZE, TROVE_REPLACES,
    TROVE_WRITE,
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
        state: BlobState::Pending,
        md5: None,
        write,
        replaces,
        copy_of: None,
        meta,
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

/// `201` with the sha256 and size of what was stored (and its md5, when
/// the volume knows it).
pub(crate) fn stored(meta: BlobMeta) -> Response {
    let mut resp = (
        StatusCode::CREATED,
        [(KEY_SHA256, meta.sha256), (KEY_SIZE, meta.size.to_string())],
    )
        .into_response();
    if let Ok(md5) = meta.md5.parse() {
        if !meta.md5.is_empty() {
            resp.headers_mut().insert(KEY_MD5, md5);
        }
    }
    resp
}
