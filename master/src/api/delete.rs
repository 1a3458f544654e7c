//! `DELETE /key` (remove everywhere) and `UNLINK /key` (soft delete).

use crate::error::ApiError;
use crate::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use trove_common::crash;
use trove_common::key::Key;
use trove_common::record::{now_ms, BlobState, Record, State};

/// Unlinks the key (so it reads as absent at once), removes every replica,
/// then the record. A replica that cannot be removed leaves the key
/// unlinked, and a later `DELETE` finishes the job.
pub async fn delete(state: Arc<AppState>, key: Key) -> Result<Response, ApiError> {
    // Its own task, like a write: a client hanging up cannot stop it half-way.
    tokio::spawn(async move {
        let _guard = state.locks.try_lock(&key).ok_or(ApiError::Busy)?;
        let record = state.index.get(&key)?.ok_or(ApiError::NotFound)?;
        let mut volumes = record.volumes.clone();
        let mut stored = record.state;
        match record.state {
            State::Live => {
                if state.config.protect {
                    return Err(ApiError::Protected);
                }
                unlink_record(&state, &key, &record).await?;
                crash::point("delete-unlinked");
                stored = State::Unlinked;
            }
            State::Unlinked => {}
            // With the lock free, a *writing* record is a failed write
            // whose clean-up has not finished. Over an unlinked key, the
            // key is still that unlinked key: deleting it removes the
            // failed write's blobs as well. Otherwise there is no key.
            State::Writing => {
                let replaced = record.replaces.as_deref().ok_or(ApiError::NotFound)?;
                // A failed replace still being undone: the key is the live
                // value it replaced.
                if state.config.protect && record.visible(now_ms()).is_some() {
                    return Err(ApiError::Protected);
                }
                volumes.extend(
                    replaced
                        .volumes
                        .iter()
                        .filter(|v| !record.volumes.contains(v))
                        .cloned(),
                );
            }
        }
        let client = state.volumes.client();
        let deletes = volumes.iter().map(|addr| client.delete(addr, &key));
        for result in futures::future::join_all(deletes).await {
            if let Err(e) = result {
                state.volumes.note_error(&e);
                return Err(e.into());
            }
        }
        crash::point("delete-removed");
        state.index.remove(&key, Some(stored)).await?;
        tracing::info!(key = %key, "deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await?
}

/// Soft delete: the key reads as absent and is listed by `?unlinked`; its
/// bytes stay until `DELETE`.
pub async fn unlink(state: Arc<AppState>, key: Key) -> Result<Response, ApiError> {
    let _guard = state.locks.try_lock(&key).ok_or(ApiError::Busy)?;
    let mut stored = state.index.get(&key)?;
    if let Some(writing) = stored
        .as_ref()
        .filter(|r| r.state == State::Writing && r.visible(now_ms()).is_some())
    {
        // A failed or dead replace not yet undone (its clean-up pending,
        // or the master restarted mid-write): the key reads as the value
        // it replaced, so undo the write now and unlink that value.
        crate::write::undo_on_volumes(&state, &key, writing).await?;
        crate::write::restore_record(&state, &key, writing).await?;
        stored = state.index.get(&key)?;
    }
    let record = stored
        .filter(|r| r.state == State::Live && !r.expired(now_ms()))
        .ok_or(ApiError::NotFound)?;
    unlink_record(&state, &key, &record).await?;
    crash::point("unlink-recorded");
    // The volumes learn it too, so that `rebuild` does not revive it. The
    // index is the truth: a volume that misses this only matters if the
    // index is lost before the key is deleted.
    if let Err(e) = state
        .volumes
        .mark_all(&key, &record.volumes, BlobState::Unlinked, None, None)
        .await
    {
        tracing::warn!(key = %key, error = %e, "a volume did not record the unlink");
    }
    tracing::info!(key = %key, "unlinked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn unlink_record(state: &AppState, key: &Key, record: &Record) -> Result<(), ApiError> {
    let unlinked = Record {
        state: State::Unlinked,
        ..record.clone()
    };
    Ok(state.index.put(key, unlinked, Some(State::Live)).await?)
}
