//! The delete path: `DELETE` (remove a key's value from every replica,
//! then its record) and `UNLINK` (soft delete), beside [`crate::write`]
//! which is the write path. The handlers in `api/delete.rs` only call in
//! here and answer.
//!
//! A `DELETE` first unlinks the key, so it reads as absent at once, then
//! removes every replica, then the record. A replica that cannot be
//! removed leaves the key unlinked: a later `DELETE` finishes the job (a
//! volume's `404` counts as done). A volume the operator has removed from
//! the master's list is not waited on ([`remove_replicas`]).

use crate::client::VolumeError;
use crate::error::ApiError;
use crate::marks::{again_later, Again};
use crate::AppState;
use std::sync::Arc;
use trove_common::conditions::{Current, Preconditions};
use trove_common::crash;
use trove_common::key::Key;
use trove_common::record::{now_ms, BlobState, Record, State};

/// Removes `key` everywhere: its replicas, then its record — if the value
/// it reads as passes `conditions` (else `412`, and nothing changes).
///
/// Runs in its own task, like a write: a client hanging up cannot stop it
/// half-way.
pub async fn delete(state: Arc<AppState>, key: Key, conditions: Preconditions) -> Result<(), ApiError> {
    tokio::spawn(async move {
        let _guard = state.locks.try_lock(&key).ok_or(ApiError::Busy)?;
        let stored = state.index.get(&key)?;
        if state.config.protect && stored.as_ref().is_some_and(|r| r.visible(now_ms()).is_some()) {
            return Err(ApiError::Protected);
        }
        let record = undo_failed_replace(&state, &key, stored)
            .await?
            .ok_or(ApiError::NotFound)?;
        // An expired key is absent, as a read answers, before the expirer
        // has collected it as after (the expirer removes its bytes) — and
        // so is one whose failed write, still being undone, would restore
        // an expired value.
        let now = now_ms();
        if record
            .settled()
            .is_some_and(|r| r.state == State::Live && r.expired(now))
        {
            return Err(ApiError::NotFound);
        }
        check(&conditions, &record)?;
        let (volumes, stored) = match record.state {
            State::Live => {
                if state.config.protect {
                    return Err(ApiError::Protected);
                }
                unlink_record(&state, &key, &record).await?;
                crash::point("delete-unlinked");
                (record.volumes.clone(), State::Unlinked)
            }
            State::Unlinked => (record.volumes.clone(), State::Unlinked),
            State::Writing => (failed_write_volumes(&record)?, record.counted_state()),
        };
        // The copies go only if the record can go after them.
        state.index.check_writable()?;
        if let Err((_, e)) = remove_replicas(&state, &key, &volumes).await {
            // The record as the index has it now: unlinked, or the failed
            // write's.
            let unfinished = Record {
                state: match record.state {
                    State::Writing => State::Writing,
                    _ => State::Unlinked,
                },
                ..record
            };
            tokio::spawn(delete_later(Arc::clone(&state), key, unfinished, stored, volumes));
            return Err(ApiError::DeleteUnfinished(e));
        }
        crash::point("delete-removed");
        state.index.remove(&key, Some(stored)).await?;
        tracing::debug!(key = %key, "deleted");
        Ok(())
    })
    .await?
}

/// Finishes, in the background, a `DELETE` that a replica's volume
/// interrupted: once the volume is back, the copies on `volumes` are
/// removed and then the record, as the `DELETE` would have — unless the
/// key changed since (written again, deleted): it must still read as
/// `unfinished` does (its settled state and write; `counted` is the state
/// the index counts it as). Meanwhile the key reads as absent; without
/// this, the copy left `live` on that volume would stay (until gc) and a
/// `rebuild` would bring the deleted key back.
async fn delete_later(
    state: Arc<AppState>,
    key: Key,
    unfinished: Record,
    counted: State,
    volumes: Vec<String>,
) {
    let (what, left) = (
        "the delete of the key's copies",
        "to a DELETE sent again (a rebuild before it would bring the key back)",
    );
    again_later(&state, &key, &volumes, what, left, |current| {
        let (state, key, unfinished, volumes) = (&state, &key, &unfinished, &volumes);
        async move {
            // The key as it reads must be unchanged: a failed write's
            // record may have been put back as the unlinked one it was
            // over (by its clean-up, or gc) meanwhile.
            let settled = |r: &Record| r.settled().map(|s| (s.state, s.write.clone()));
            let same = current.is_some_and(|r| settled(&r) == settled(unfinished));
            if !same {
                return Again::Moot;
            }
            if let Err((_, e)) = remove_replicas(state, key, volumes).await {
                return Again::Failed(e.to_string());
            }
            match state.index.remove(key, Some(counted)).await {
                Ok(()) => Again::Done,
                Err(e) => Again::Failed(e.to_string()),
            }
        }
    })
    .await;
}

/// The key's record `stored`, after undoing a failed or dead replace not
/// yet undone (its clean-up pending, or the master restarted mid-write):
/// such a key reads as the value it replaced, so the write is undone on
/// the volumes and that value's record put back first, and the caller
/// (`DELETE`, `UNLINK`) acts on it as on any live key — never removing
/// copies while the index still sends readers to them. The caller holds
/// the key's lock.
async fn undo_failed_replace(
    state: &AppState,
    key: &Key,
    stored: Option<Record>,
) -> Result<Option<Record>, ApiError> {
    match stored {
        Some(writing) if writing.state == State::Writing && writing.visible(now_ms()).is_some() => {
            crate::write::undo_on_volumes(state, key, &writing).await?;
            crate::write::restore_record(state, key, &writing).await?;
            Ok(state.index.get(key)?)
        }
        other => Ok(other),
    }
}

/// What a `DELETE` removes when the key's record is *writing* over no
/// value it reads as (a replace of a live value is undone first): with
/// the lock free, a failed write whose clean-up has not finished. Over an
/// unlinked key, the key is still that key: deleting it removes the
/// failed write's blobs as well as the old value's. Otherwise there is no
/// key (`404`).
fn failed_write_volumes(record: &Record) -> Result<Vec<String>, ApiError> {
    let replaced = record.replaces.as_deref().ok_or(ApiError::NotFound)?;
    let mut volumes = record.volumes.clone();
    volumes.extend(
        replaced
            .volumes
            .iter()
            .filter(|v| !record.volumes.contains(v))
            .cloned(),
    );
    Ok(volumes)
}

/// Deletes `key` from every volume of `volumes` that is one of the
/// master's, in parallel; a volume's `404` counts as done. The first
/// failure (and its volume) is returned, after every call has finished,
/// and every failure is noted in the roster.
///
/// A volume no longer in the master's list is not called: the operator
/// removed it, so its copies are the operator's to wipe with it (or gc's,
/// if it is added back), and it may well be gone for good — waiting on it
/// would fail this `DELETE` (or expiry) for ever. Rebalance moves live
/// keys off a removed volume, but not unlinked ones, whose records can
/// still name it.
pub(crate) async fn remove_replicas(
    state: &AppState,
    key: &Key,
    volumes: &[String],
) -> Result<(), (String, VolumeError)> {
    let listed = state.volumes.placement().volumes();
    let (volumes, removed): (Vec<&String>, Vec<&String>) = volumes
        .iter()
        .partition(|addr| listed.iter().any(|v| v.addr == **addr));
    for addr in removed {
        tracing::debug!(key = %key, volume = %addr, "not one of the master's volumes: its copy is left to the operator");
    }
    let client = state.volumes.client();
    let deletes = volumes.iter().map(|addr| client.delete(addr, key));
    let mut first_error = None;
    for (addr, result) in volumes.iter().zip(futures::future::join_all(deletes).await) {
        if let Err(e) = result {
            state.volumes.note_error(&e);
            first_error.get_or_insert(((*addr).clone(), e));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Soft delete: the key reads as absent and is listed by `?unlinked`; its
/// bytes stay until `DELETE`. Only if its value passes `conditions` (else
/// `412`).
pub async fn unlink(state: &Arc<AppState>, key: &Key, conditions: &Preconditions) -> Result<(), ApiError> {
    let _guard = state.locks.try_lock(key).ok_or(ApiError::Busy)?;
    let stored = undo_failed_replace(state, key, state.index.get(key)?).await?;
    let record = stored
        .filter(|r| r.state == State::Live && !r.expired(now_ms()))
        .ok_or(ApiError::NotFound)?;
    check(conditions, &record)?;
    unlink_record(state, key, &record).await?;
    crash::point("unlink-recorded");
    // The volumes learn it too, so that `rebuild` does not revive it. The
    // index is the truth: a volume that misses this only matters if the
    // index is lost before the key is deleted — so it is sent again, in
    // the background, until every replica has it.
    if let Err(e) = state
        .volumes
        .mark_all(key, &record.volumes, BlobState::Unlinked, None, None)
        .await
    {
        tracing::warn!(key = %key, error = %e, "a volume did not record the unlink; trying again");
        let unlinked = Record {
            state: State::Unlinked,
            ..record
        };
        tokio::spawn(crate::marks::mark_later(
            Arc::clone(state),
            key.clone(),
            unlinked,
            BlobState::Unlinked,
        ));
    }
    tracing::debug!(key = %key, "unlinked");
    Ok(())
}

/// Checks a delete's or an unlink's `conditions` against the value the
/// key's `record` reads as: its live value, or none (an unlinked key, a
/// failed write over nothing). Called under the key's lock.
fn check(conditions: &Preconditions, record: &Record) -> Result<(), ApiError> {
    let current = record
        .settled()
        .filter(|r| r.state == State::Live)
        .map(|r| Current::new(r.etag(), r.created));
    conditions
        .check(current)
        .map_err(|failed| ApiError::PreconditionFailed {
            failed,
            outcome: "; nothing was changed",
        })
}

/// Records the live `record` of `key` as unlinked.
async fn unlink_record(state: &AppState, key: &Key, record: &Record) -> Result<(), ApiError> {
    let unlinked = Record {
        state: State::Unlinked,
        ..record.clone()
    };
    Ok(state.index.put(key, unlinked, Some(State::Live)).await?)
}
