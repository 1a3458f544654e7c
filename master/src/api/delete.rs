//! `DELETE /key` (remove everywhere) and `UNLINK /key` (soft delete): the
//! protocol is in [`crate::delete`]; a success is `204`.

use crate::error::ApiError;
use crate::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use trove_common::key::Key;

/// `DELETE /key`.
pub async fn delete(state: Arc<AppState>, key: Key) -> Result<Response, ApiError> {
    crate::delete::delete(state, key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `UNLINK /key`.
pub async fn unlink(state: Arc<AppState>, key: Key) -> Result<Response, ApiError> {
    crate::delete::unlink(&state, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
