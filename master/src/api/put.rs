//! `PUT`/`POST /key`: parse what the client announced, then hand the body
//! to the write path.

use crate::error::ApiError;
use crate::write::{self, Upload};
use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use trove_common::digest::parse_content_md5;
use trove_common::http::{content_length, CONTENT_MD5, KEY_SHA256};
use trove_common::key::Key;

pub async fn put(state: Arc<AppState>, key: Key, req: Request<Body>) -> Result<Response, ApiError> {
    let headers = req.headers();
    let len = content_length(headers).map_err(|e| ApiError::BadRequest(e.into()))?;
    if len == Some(0) {
        return Err(ApiError::EmptyBody);
    }
    let content_md5 = match headers.get(CONTENT_MD5) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Content-MD5 is not ASCII".into()))
                .and_then(|s| parse_content_md5(s).map_err(|e| ApiError::BadRequest(e.to_string())))?,
        ),
    };
    let expires =
        crate::expiry::requested(headers, state.config.default_ttl, trove_common::record::now_ms())?;
    let body = req.into_body();
    // The write runs in its own task so that a client hanging up cannot
    // cancel it half-way: it always finishes or cleans up after itself.
    let record = tokio::spawn(write::write(
        state,
        key.clone(),
        Upload {
            len,
            content_md5,
            expires,
        },
        body,
    ))
    .await??;
    tracing::info!(key = %key, size = record.size, volumes = ?record.volumes, "stored");
    Ok((StatusCode::CREATED, [(KEY_SHA256, record.sha256)]).into_response())
}
