//! `DELETE /<key>`: remove the blob and its sidecar.

use crate::error::ApiError;
use crate::store::StoreError;
use crate::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use trove_common::key::Key;

pub async fn delete(state: &AppState, key: Key) -> Result<Response, ApiError> {
    let store = state.store.clone();
    // Refused here, before it takes a thread, while the key's disk leaves
    // writes waiting; then timed as a write of that disk.
    store.disk_for_writing(&key)?;
    let k = key.clone();
    let deleted = store.short_call(move |store| store.small_write(&k, || store.delete(&k)));
    if deleted.await?? {
        tracing::debug!(key = %key, "deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(StoreError::NotFound.into())
    }
}
