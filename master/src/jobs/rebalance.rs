//! `rebalance`: move every live key whose volumes differ from its placement
//! under the current volume list.
//!
//! Per key, under its lock: each missing home volume pulls a copy from a
//! current replica (`POST /-/pull`, checked against the record's sha256 —
//! the bytes go volume to volume, never through the master); then the
//! record switches to the new volumes. The old copies are deleted
//! [`DRAIN`] later, so that a reader redirected to an old volume just
//! before the switch still finds the value there; that deletion re-takes
//! the key's lock and re-reads the record, and skips any copy the record
//! references again by then.

use super::{for_each_record, JobParams, Progress};
use crate::client::VolumeError;
use crate::index::IndexError;
use crate::AppState;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use trove_common::key::Key;
use trove_common::record::{Record, State};

/// How long old copies outlive the switch of a record to its new volumes:
/// longer than a client takes to follow a redirect.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Why a key could not be moved (the job reports it and goes on).
#[derive(Debug, thiserror::Error)]
enum MoveError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("no healthy replica to copy from (stored on {stored})")]
    NoSource { stored: String },
    #[error("copy to {dest} failed: {source}")]
    Copy { dest: String, source: VolumeError },
}

/// What happened to one key.
enum Outcome {
    /// Copied to `copies` new volumes; `old` copies are to be removed.
    Moved { copies: u64, old: Vec<String> },
    /// Already in place (or deleted meanwhile).
    InPlace,
    /// Left for a later run.
    Skipped(String),
}

pub async fn run(state: Arc<AppState>, params: JobParams, progress: Arc<Progress>) -> anyhow::Result<()> {
    Progress::add(&progress.total, state.index.counts().live.max(0) as u64);
    let removals = parking_lot::Mutex::new(JoinSet::new());
    let pace = params.pace();
    let walked = for_each_record(&state, &progress, params.concurrency(), |key, record| {
        let (state, progress, params, removals, pace) = (&state, &progress, &params, &removals, &pace);
        async move {
            if record.state != State::Live {
                return;
            }
            Progress::add(&progress.scanned, 1);
            let home = home_of(state, &key);
            let new_copies = home.iter().filter(|a| !record.volumes.contains(a)).count() as u64;
            if new_copies == 0 && home.len() == record.volumes.len() {
                return;
            }
            if params.dry_run {
                Progress::add(&progress.changed, 1);
                Progress::add(&progress.bytes, record.size * new_copies);
                return;
            }
            if !pace.turn(progress).await {
                return;
            }
            match move_key(state, &key).await {
                Ok(Outcome::Moved { copies, old }) => {
                    Progress::add(&progress.changed, 1);
                    Progress::add(&progress.bytes, record.size * copies);
                    let (state, progress) = (Arc::clone(state), Arc::clone(progress));
                    let mut removals = removals.lock();
                    removals.spawn(remove_old_copies(state, progress, key, old));
                }
                Ok(Outcome::InPlace) => {}
                Ok(Outcome::Skipped(why)) => {
                    Progress::add(&progress.skipped, 1);
                    tracing::debug!(key = %key, why = %why, "rebalance skipped a key");
                }
                Err(e) => {
                    Progress::add(&progress.failed, 1);
                    progress.problem(format!("{key}: {e}"));
                }
            }
        }
    })
    .await;
    // Old copies still waiting for their drain are removed before the job
    // reports done (also when it was stopped).
    let mut removals = removals.into_inner();
    while removals.join_next().await.is_some() {}
    walked
}

/// After [`DRAIN`], deletes the copies of `key` on `old` volumes that the
/// record still does not reference.
async fn remove_old_copies(state: Arc<AppState>, progress: Arc<Progress>, key: Key, old: Vec<String>) {
    tokio::time::sleep(DRAIN).await;
    // The key may be busy with a client's write or delete: wait a little.
    let mut guard = None;
    for _ in 0..50 {
        guard = state.locks.try_lock(&key);
        if guard.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(_guard) = guard else {
        progress.problem(format!(
            "{key}: old copies on {} stay for now (key busy); gc will remove them",
            old.join(",")
        ));
        return;
    };
    let record = match state.index.get(&key) {
        Ok(r) => r,
        Err(e) => return progress.problem(format!("{key}: {e}")),
    };
    for addr in old {
        if record.as_ref().is_some_and(|r| r.volumes.contains(&addr)) {
            continue;
        }
        if let Err(e) = state.volumes.client().delete(&addr, &key).await {
            state.volumes.note_error(&e);
            // gc walks only the volumes the master is given.
            let cleaned_by = if state.volumes.placement().volumes().iter().any(|v| v.addr == addr) {
                "gc will remove it"
            } else {
                "it is no longer one of the master's volumes, so gc will not reach it: \
                 delete it on that volume, or add the volume back and run gc"
            };
            progress.problem(format!(
                "{key}: moved, but the old copy on {addr} remains ({e}); {cleaned_by}"
            ));
        }
    }
}

/// The key's placement under the current volume list, in order.
fn home_of(state: &AppState, key: &Key) -> Vec<String> {
    let placement = state.volumes.placement();
    placement
        .home(key.as_bytes())
        .into_iter()
        .map(|v| v.addr.clone())
        .collect()
}

async fn move_key(state: &AppState, key: &Key) -> Result<Outcome, MoveError> {
    let Some(_guard) = state.locks.try_lock(key) else {
        return Ok(Outcome::Skipped("a write or delete holds the key".into()));
    };
    // Re-read under the lock: the key may have changed since the scan.
    let record = match state.index.get(key) {
        Ok(Some(r)) if r.state == State::Live => r,
        Ok(_) => return Ok(Outcome::InPlace),
        Err(e) => return Err(e.into()),
    };
    let home = home_of(state, key);
    if state
        .volumes
        .placement()
        .is_balanced(key.as_bytes(), &record.volumes)
    {
        return Ok(Outcome::InPlace);
    }
    if let Some(down) = home.iter().find(|a| !state.volumes.is_healthy(a)) {
        return Ok(Outcome::Skipped(format!("home volume {down} is down")));
    }
    let client = state.volumes.client();
    // A damaged copy counts as missing, and so does one on a volume
    // emptied since the key was written (its disk replaced, no repair
    // run yet): a home volume holding one gets a fresh copy — the record
    // must not come to name only volumes that lack the value while the
    // good copies elsewhere are removed.
    let readable: Vec<String> = record
        .readable()
        .into_iter()
        .filter(|a| state.volumes.kept_data(a, record.created))
        .collect();
    let targets: Vec<&String> = home.iter().filter(|a| !readable.contains(a)).collect();
    let (record, readable) = (&record, &readable);
    let copies = targets.iter().map(|dest| async move {
        let source = state
            .volumes
            .source_for(readable, record.created, dest)
            .ok_or_else(|| MoveError::NoSource {
                stored: record.volumes.join(","),
            })?;
        client.pull(dest, key, &source, record).await.map_err(|e| {
            state.volumes.note_error(&e);
            MoveError::Copy {
                dest: dest.to_string(),
                source: e,
            }
        })
    });
    let results = futures::future::join_all(copies).await;
    if results.iter().any(Result::is_err) {
        // Undo the copies that did arrive on volumes the record does not
        // name (a copy made over one the record names stays: a repair may
        // have restored it there); the record never changed.
        let mut first_error = None;
        for (dest, result) in targets.iter().zip(results) {
            match result {
                Ok(()) if !record.volumes.contains(dest) => {
                    let _ = client.delete(dest, key).await;
                }
                Ok(()) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        return Err(first_error.expect("one copy failed"));
    }
    let moved = Record {
        volumes: home.clone(),
        damaged: vec![],
        ..record.clone()
    };
    state.index.put(key, moved, Some(State::Live)).await?;
    tracing::info!(key = %key, from = ?record.volumes, to = ?home, "rebalanced");
    Ok(Outcome::Moved {
        copies: targets.len() as u64,
        old: record
            .volumes
            .iter()
            .filter(|a| !home.contains(a))
            .cloned()
            .collect(),
    })
}
