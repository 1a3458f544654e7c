//! `PUT`/`POST /key`: parse what the client announced (length, and the
//! `Content-MD5` and `Key-Sha256` to check the body against), then hand the
//! body to the write path.

use crate::error::ApiError;
use crate::write::{self, Upload};
use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use trove_common::digest::{parse_content_md5, parse_sha256_hex};
use trove_common::http::{content_length, CONTENT_MD5, KEY_SHA256};
use trove_common::key::Key;

pub async fn put(state: Arc<AppState>, key: Key, req: Request<Body>) -> Result<Response, ApiError> {
    let headers = req.headers();
    let len = content_length(headers).map_err(|e| ApiError::BadRequest(e.into()))?;
    if len == Some(0) {
        return Err(ApiError::EmptyBody);
    }
    let content_md5 = one_header(headers, CONTENT_MD5, "Content-MD5")?
        .map(|s| parse_content_md5(s).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()?;
    let key_sha256 = one_header(headers, KEY_SHA256, "Key-Sha256")?
        .map(|s| {
            parse_sha256_hex(s).ok_or_else(|| ApiError::BadRequest("Key-Sha256 must be 64 hex digits".into()))
        })
        .transpose()?;
    let expires =
        crate::expiry::requested(headers, state.config.default_ttl, trove_common::record::now_ms())?;
    let body = req.into_body();
    let upload = Upload {
        len,
        content_md5,
        key_sha256,
        expires,
    };
    // The write runs in its own task so that a client hanging up cannot
    // cancel it half-way: it always finishes or cleans up after itself.
    let record = tokio::spawn(write::write(state, key.clone(), upload, body)).await??;
    tracing::info!(key = %key, size = record.size, volumes = ?record.volumes, "stored");
    Ok((StatusCode::CREATED, [(KEY_SHA256, record.sha256)]).into_response())
}

/// The value of a header that may be sent at most once: two checksums
/// could disagree, and checking only one would let the other pass unseen.
fn one_header<'a>(headers: &'a HeaderMap, name: &str, shown: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!(
            "{shown} was sent more than once; send it once"
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| ApiError::BadRequest(format!("{shown} is not ASCII")))
}
