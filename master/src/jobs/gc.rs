//! `gc`: reclaim space no live record uses.
//!
//! 1. Dead writes: a record still *writing* whose key nobody holds (the
//!    master restarted mid-write, or a failed write's clean-up gave up) —
//!    its replicas are deleted, then the key's earlier record is put back.
//!    No grace period: a write in progress holds its key's lock for as
//!    long as it runs, so a free key proves its write dead, however young.
//! 2. Orphan blobs: every blob on every healthy volume that no record
//!    references on that volume (a failed write whose clean-up could not
//!    reach the volume, a delete done while the volume was down, the old
//!    copy of a rebalance) and older than the grace period. Each volume's
//!    blobs come from its `/-/listing` (compact, key order), each looked
//!    up in the index (no request per blob unless it is deleted).
//!
//! A volume this index first saw already holding blobs, the index being
//! one a master created empty (a master started on a lost or mistyped
//! `--db`), keeps the blobs older than that sight: they may be a lost
//! index's values, which `rebuild` brings back, and gc deleting them would
//! lose them for good.
//!
//! A blob is deleted only under its key's lock, after re-reading the
//! record, so a key being written or deleted meanwhile is never touched.
//! Unlinked keys are referenced: their bytes wait for `DELETE`.

use super::{for_each_record, JobParams, Pace, Progress};
use crate::client::VolumeError;
use crate::error::ApiError;
use crate::AppState;
use futures::StreamExt;
use std::sync::Arc;
use trove_common::key::Key;
use trove_common::protocol::listing::Listed;
use trove_common::record::{now_ms, BlobMeta, Record, State};

/// Default grace period: blobs younger than this are never collected.
pub const DEFAULT_GRACE_SECS: u64 = 3600;

pub async fn run(state: Arc<AppState>, params: JobParams, progress: Arc<Progress>) -> anyhow::Result<()> {
    let grace_ms = params
        .grace_secs
        .unwrap_or(DEFAULT_GRACE_SECS)
        .saturating_mul(1000);
    let cutoff = now_ms().saturating_sub(grace_ms);
    let concurrency = params.concurrency();

    // A dry run changes nothing: it goes at full speed.
    let pace = if params.dry_run {
        Pace::new(None)
    } else {
        params.pace()
    };
    for_each_record(&state, &progress, concurrency, |key, record| {
        let (state, progress, params, pace) = (&state, &progress, &params, &pace);
        async move {
            if record.state == State::Writing && pace.turn(progress).await {
                clear_dead_write(state, progress, params.dry_run, &key).await;
            }
        }
    })
    .await?;

    for (spec, health) in state.volumes.snapshot() {
        if progress.cancelled() {
            break;
        }
        let addr = spec.addr;
        if !health.healthy {
            Progress::add(&progress.skipped, health.blobs.unwrap_or(0));
            // A failure, so that the run exits 1: its work is not done.
            Progress::add(&progress.failed, 1);
            progress.problem(format!("volume {addr} is down; its orphans wait for the next gc"));
            continue;
        }
        Progress::add(&progress.total, health.blobs.unwrap_or(0));
        let foreign = Foreign {
            before: health.foreign_before.unwrap_or(0),
            left: Default::default(),
        };
        // The volume's listing: its blobs in key order, in chunks.
        let blobs = match state.volumes.client().listing(&addr).await {
            Ok(chunks) => chunks.flat_map(|chunk| {
                let items: Vec<Result<Listed, VolumeError>> = match chunk {
                    Ok(entries) => entries.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(items)
            }),
            Err(e) => {
                Progress::add(&progress.failed, 1);
                progress.problem(format!("cannot list blobs of {addr}: {e}"));
                continue;
            }
        };
        let (state, progress, params, addr, pace, foreign) =
            (&state, &progress, &params, &addr, &pace, &foreign);
        // Taken from the listing a batch at a time (see `read_ahead`).
        let mut batches = std::pin::pin!(blobs
            .take_while(|_| futures::future::ready(!progress.cancelled()))
            .chunks(params.read_ahead()));
        while let Some(entries) = batches.next().await {
            futures::stream::iter(entries)
                .for_each_concurrent(concurrency, |entry| async move {
                    match entry {
                        // A copy whose metadata does not read says nothing of
                        // its age: it stays (and `verify` reports it).
                        Ok(entry) if entry.unreadable => {}
                        Ok(Listed { meta, .. }) if meta.created < foreign.before => {
                            Progress::add(&progress.scanned, 1);
                            Progress::add(&progress.skipped, 1);
                            foreign.left.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(Listed { meta, .. }) => {
                            Progress::add(&progress.scanned, 1);
                            collect_blob(state, progress, pace, params.dry_run, cutoff, addr, meta).await;
                        }
                        Err(e) => {
                            Progress::add(&progress.failed, 1);
                            progress.problem(format!("listing of {addr} broke off: {e}"));
                        }
                    }
                })
                .await;
        }
        let left = foreign.left.load(std::sync::atomic::Ordering::Relaxed);
        if left > 0 {
            // A failure, so that the run exits 1: the operator must act.
            Progress::add(&progress.failed, 1);
            progress.problem(format!(
                "volume {addr}: {left} blob(s) left alone: they were there before this index, which a master created empty, first saw the volume, so they may be the values of a lost index; run `trove-master rebuild` (README, \"Recover a lost index\") to bring them back, or empty the volume if they are not wanted"
            ));
        }
    }
    Ok(())
}

/// A volume this index (created empty by a master) first saw holding blobs
/// ([`crate::volumes::Health::foreign_before`]): its blobs older than
/// `before` are not gc's to judge.
struct Foreign {
    before: u64,
    left: std::sync::atomic::AtomicU64,
}

/// Whether no record keeps the blob of `key` on `addr` alive (an index
/// error counts as referenced, and as a failure).
fn unreferenced(state: &AppState, progress: &Progress, key: &Key, addr: &str) -> bool {
    match state.index.get(key) {
        Ok(r) => !references(r.as_ref(), addr),
        Err(e) => {
            Progress::add(&progress.failed, 1);
            progress.problem(format!("{key}: {e}"));
            false
        }
    }
}

/// Whether `record` keeps the blob of its key on `addr` alive: a live or
/// unlinked record on that volume, or the unlinked record a write in
/// progress (or a dead one) would restore.
fn references(record: Option<&Record>, addr: &str) -> bool {
    let on = |r: &Record| r.volumes.iter().any(|v| v == addr);
    record.is_some_and(|r| (r.state != State::Writing && on(r)) || r.replaces.as_deref().is_some_and(on))
}

/// Whether the blob `meta` of `key` is a copy of a dead write, which the
/// first pass undoes (a *writing* record with this copy's write id),
/// whatever the copy's own age.
fn dead_write_copy(state: &AppState, key: &Key, meta: &BlobMeta) -> bool {
    matches!(
        state.index.get(key),
        Ok(Some(r)) if r.state == State::Writing
            && (r.write.is_none() || r.write == meta.write)
    )
}

/// Deletes the blob `meta` on `addr` if no record references it and it is
/// older than `cutoff`. A dry run leaves out the copies of dead writes:
/// the first pass counted them, and in a real run it has removed them
/// before this one looks.
async fn collect_blob(
    state: &AppState,
    progress: &Progress,
    pace: &Pace,
    dry_run: bool,
    cutoff: u64,
    addr: &str,
    meta: BlobMeta,
) {
    let key = match Key::new(&meta.key) {
        Ok(k) => k,
        Err(e) => {
            progress.problem(format!(
                "volume {addr} holds a blob with an invalid key {:?}: {e}",
                meta.key
            ));
            return;
        }
    };
    let goes = || {
        meta.created <= cutoff
            && unreferenced(state, progress, &key, addr)
            && !(dry_run && dead_write_copy(state, &key, &meta))
    };
    // A cheap look first; the lock only for candidates, and then look again.
    // An orphan: its turn comes before its lock (waiting holds no key).
    if !goes() || !pace.turn(progress).await {
        return;
    }
    let Some(_guard) = state.locks.try_lock(&key) else {
        Progress::add(&progress.skipped, 1);
        return;
    };
    if !goes() {
        return;
    }
    if dry_run {
        Progress::add(&progress.changed, 1);
        Progress::add(&progress.bytes, meta.size);
        progress.would(format!(
            "would delete {key} on {addr} ({}): no record names this copy",
            indicatif::HumanBytes(meta.size)
        ));
        return;
    }
    match state.volumes.client().delete(addr, &key).await {
        Ok(_) => {
            tracing::info!(key = %key, volume = %addr, size = meta.size, "gc removed an orphan");
            Progress::add(&progress.changed, 1);
            Progress::add(&progress.bytes, meta.size);
        }
        Err(e) => fail(state, progress, &key, addr, e),
    }
}

async fn clear_dead_write(state: &AppState, progress: &Progress, dry_run: bool, key: &Key) {
    if dry_run {
        count_dead_write(state, progress, key).await;
        return;
    }
    match undo_dead_write(state, key).await {
        Ok(Some((blobs, bytes))) => {
            tracing::info!(key = %key, blobs, bytes, "gc undid a dead write");
            Progress::add(&progress.found, 1);
            // Counted like orphans: blobs deleted and their bytes.
            Progress::add(&progress.changed, blobs);
            Progress::add(&progress.bytes, bytes);
        }
        Ok(None) => {}
        Err(e) => {
            Progress::add(&progress.failed, 1);
            progress.problem(format!("{key}: cannot undo a dead write: {e}"));
        }
    }
}

/// Undoes `key`'s write if it is dead: its record still *writing* while
/// nobody holds the key (a write in progress holds it throughout). Its
/// copies are removed from the volumes, each of which puts back the value
/// it replaced, and so is the key's earlier record. `Some` with the blobs
/// and bytes removed when it undid one; `None` when a write is in progress
/// or the record is not *writing* (any more).
pub(crate) async fn undo_dead_write(state: &AppState, key: &Key) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(_guard) = state.locks.try_lock(key) else {
        return Ok(None);
    };
    let record = match state.index.get(key)? {
        Some(r) if r.state == State::Writing => r,
        _ => return Ok(None),
    };
    let removed = crate::write::undo_on_volumes(state, key, &record).await?;
    crate::write::restore_record(state, key, &record).await?;
    Ok(Some(removed))
}

/// A dry run's look at a dead write: what its undo would remove (some
/// copies may never have reached their volume; an unreachable one counts
/// as a failure, as the undo would).
async fn count_dead_write(state: &AppState, progress: &Progress, key: &Key) {
    let Some(_guard) = state.locks.try_lock(key) else {
        return; // a write is in progress after all
    };
    let record = match state.index.get(key) {
        Ok(Some(r)) if r.state == State::Writing => r,
        _ => return,
    };
    Progress::add(&progress.found, 1);
    let client = state.volumes.client();
    let found = record
        .volumes
        .iter()
        .map(|addr| client.head(addr, key, record.write.as_deref()));
    for (addr, found) in record.volumes.iter().zip(futures::future::join_all(found).await) {
        match found {
            Ok(Some(copy)) => {
                Progress::add(&progress.changed, 1);
                Progress::add(&progress.bytes, copy.size);
                progress.would(format!(
                    "would delete {key} on {addr} ({}): a write the master died in left it",
                    indicatif::HumanBytes(copy.size)
                ));
            }
            Ok(None) => {}
            Err(e) => {
                Progress::add(&progress.failed, 1);
                progress.problem(format!(
                    "{key}: cannot look for the dead write's copy on {addr}: {e}"
                ));
            }
        }
    }
}

fn fail(state: &AppState, progress: &Progress, key: &Key, addr: &str, e: VolumeError) {
    state.volumes.note_error(&e);
    Progress::add(&progress.failed, 1);
    progress.problem(format!("{key}: cannot delete from {addr}: {e}"));
}
