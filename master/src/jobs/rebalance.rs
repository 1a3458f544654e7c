//! `rebalance`: move every live key whose volumes differ from its placement
//! under the current volume list.
//!
//! Per key, under its lock: each missing home volume pulls a copy from a
//! current replica (`POST /-/pull`, checked against the record's sha256 —
//! the bytes go volume to volume, never through the master); then the
//! record switches to the new volumes; then the old copies are deleted. A
//! reader is sent to the old volumes until the switch and to the new ones
//! after it, and both hold the value at that moment.

use super::{for_each_record, JobParams, Progress};
use crate::AppState;
use std::sync::Arc;
use trove_common::key::Key;
use trove_common::record::{Record, State};

/// What happened to one key.
enum Outcome {
    /// Copied to `copies` new volumes.
    Moved { copies: u64 },
    /// Already in place (or deleted meanwhile).
    InPlace,
    /// Left for a later run.
    Skipped(String),
}

pub async fn run(state: Arc<AppState>, params: JobParams, progress: Arc<Progress>) -> anyhow::Result<()> {
    Progress::add(&progress.total, state.index.counts().live.max(0) as u64);
    for_each_record(&state, &progress, params.concurrency(), |key, record| {
        let (state, progress, params) = (&state, &progress, &params);
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
            match move_key(state, &key, progress).await {
                Ok(Outcome::Moved { copies }) => {
                    Progress::add(&progress.changed, 1);
                    Progress::add(&progress.bytes, record.size * copies);
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
    .await
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

async fn move_key(state: &AppState, key: &Key, progress: &Progress) -> Result<Outcome, String> {
    let Some(_guard) = state.locks.try_lock(key) else {
        return Ok(Outcome::Skipped("a write or delete holds the key".into()));
    };
    // Re-read under the lock: the key may have changed since the scan.
    let record = match state.index.get(key) {
        Ok(Some(r)) if r.state == State::Live => r,
        Ok(_) => return Ok(Outcome::InPlace),
        Err(e) => return Err(e.to_string()),
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
    let targets: Vec<&String> = home.iter().filter(|a| !record.volumes.contains(a)).collect();
    let record = &record;
    let copies = targets.iter().map(|dest| async move {
        let source = state.volumes.source_for(&record.volumes, dest).ok_or_else(|| {
            format!(
                "no healthy replica to copy from (stored on {})",
                record.volumes.join(",")
            )
        })?;
        client
            .pull(dest, key, &source, &record.sha256, record.size)
            .await
            .map_err(|e| {
                state.volumes.note_error(&e);
                format!("copy to {dest} failed: {e}")
            })
    });
    let results = futures::future::join_all(copies).await;
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        // Undo the copies that did arrive; the record never changed.
        for (dest, result) in targets.iter().zip(&results) {
            if result.is_ok() {
                let _ = client.delete(dest, key).await;
            }
        }
        return Err(e.clone());
    }
    let moved = Record {
        volumes: home.clone(),
        ..record.clone()
    };
    state
        .index
        .put(key, moved, Some(State::Live))
        .await
        .map_err(|e| e.to_string())?;
    for old in record.volumes.iter().filter(|a| !home.contains(a)) {
        if let Err(e) = client.delete(old, key).await {
            state.volumes.note_error(&e);
            progress.problem(format!(
                "{key}: moved, but the old copy on {old} remains ({e}); gc will remove it"
            ));
        }
    }
    tracing::info!(key = %key, from = ?record.volumes, to = ?home, "rebalanced");
    Ok(Outcome::Moved {
        copies: targets.len() as u64,
    })
}
