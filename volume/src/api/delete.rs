//! `DELETE /<key>`: remove the blob and its sidecar.

use crate::error::ApiError;
use crate::store::StoreError;
use crate::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use trove_common::key::Key;

pub async fn delete(state: &AppState, key: Key) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let k = key.clone();
    if tokio::task::spawn_blocking(move || store.delete(&k)).await?? {
        tracing::debug!(key = %key, "deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(StoreError::NotFound.into())
    }
}
