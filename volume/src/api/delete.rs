//! `DELETE /<key>`: remove the blob and its sidecar.

use crate::error::ApiError;
use crate::store::StoreError;
use crate::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use trove_common::key::Key;

pub async fn delete(state: &AppState, key: Key) -> Result<Response, ApiError> {
    let store = state.store.clone();
    // A write to the key's home dir, timed as one (and refused while that
    // disk leaves writes waiting).
    let disk = store.disk_for_writing(&key)?;
    let k = key.clone();
    let deleted = tokio::task::spawn_blocking(move || {
        let _timed = disk.write(0);
        store.delete(&k)
    });
    if deleted.await?? {
        tracing::debug!(key = %key, "deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(StoreError::NotFound.into())
    }
}
