//! `DELETE /key` (remove everywhere) and `UNLINK /key` (soft delete): the
//! protocol is in [`crate::delete`]; a success is `204`, a failed
//! condition (`If-Match`, `If-None-Match`, `If-Unmodified-Since`) `412`.

use crate::error::ApiError;
use crate::AppState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use trove_common::conditions::Preconditions;
use trove_common::key::Key;

/// The request's conditions (`400` when they cannot be read).
fn conditions(headers: &HeaderMap) -> Result<Preconditions, ApiError> {
    Preconditions::for_change(headers).map_err(ApiError::BadRequest)
}

/// `DELETE /key`.
pub async fn delete(state: Arc<AppState>, key: Key, headers: &HeaderMap) -> Result<Response, ApiError> {
    crate::delete::delete(state, key, conditions(headers)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `UNLINK /key`.
pub async fn unlink(state: Arc<AppState>, key: Key, headers: &HeaderMap) -> Result<Response, ApiError> {
    crate::delete::unlink(&state, &key, &conditions(headers)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
