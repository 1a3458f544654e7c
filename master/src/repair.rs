//! Repair on read: a volume that finds its copy of a key damaged while
//! serving it (a block failing its CRC32C) marks the copy, refuses to
//! serve it, and reports it in its `/-/status` — as it does a copy the
//! master sent a reader for and it does not hold; the health monitor passes
//! the report here ([`crate::volumes::Volumes::take_damage_reports`]),
//! and the key gets what `verify --repair` would give it: its replicas
//! checked, each bad one re-copied from a good one, and one that cannot
//! be repaired recorded as damaged so that readers are not sent to it.
//!
//! Reports are handled one at a time, in the background: the reader who
//! found the damage has had its answer (`503`, or a body cut short), and
//! the ones after it are sent to the repaired copy or to another replica.

use crate::jobs::{verify, JobParams, Progress};
use crate::AppState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use trove_common::key::Key;
use trove_common::record::State;

/// What repair on read has done since the master started (`/-/metrics`).
#[derive(Debug, Default)]
pub struct RepairStats {
    /// Reports handled: keys checked because a volume could not serve a
    /// copy of them to a reader.
    pub checked: AtomicU64,
    /// Copies re-copied from a good replica.
    pub repaired: AtomicU64,
    /// Copies that could not be repaired (no good replica reached, a
    /// pull that failed): left to `verify --repair`.
    pub failed: AtomicU64,
}

/// A key busy with another operation, or whose record the index cannot
/// read for now (its disk stalled), is tried again this often, this far
/// apart, before it is left to the next reader or `verify --repair`.
const BUSY_ATTEMPTS: u32 = 5;
const BUSY_PAUSE: Duration = Duration::from_millis(500);

/// Handles the reports until the monitor stops sending them.
pub async fn run(state: Arc<AppState>, mut reports: Receiver<(String, String)>) {
    while let Some((volume, key)) = reports.recv().await {
        repair(&state, &volume, &key).await;
        state.volumes.damage_handled(&volume, &key);
    }
}

/// Checks and repairs `key` after `volume` reported its copy damaged.
pub async fn repair(state: &AppState, volume: &str, key: &str) {
    let Ok(key) = Key::new(key) else {
        tracing::warn!(volume, key, "a damage report names no valid key: ignored");
        return;
    };
    let params = JobParams {
        repair: true,
        ..JobParams::default()
    };
    for _ in 0..BUSY_ATTEMPTS {
        let record = match state.index.get(&key) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            // The index's disk stalled or busy: as for a busy key.
            Err(e) if e.is_transient() => {
                tracing::debug!(key = %key, error = %e, "the index cannot be read yet to repair a damaged copy");
                tokio::time::sleep(BUSY_PAUSE).await;
                continue;
            }
            Err(e) => {
                tracing::error!(key = %key, error = %e, "cannot read the index to repair a damaged copy");
                return;
            }
        };
        // A replace the master died in: readers get the value it was
        // replacing, which cannot be repaired while the dead write is
        // there. Undone first (nothing if the write is in progress).
        if record.state == State::Writing && record.settled().is_some_and(|r| r.state == State::Live) {
            match crate::jobs::gc::undo_dead_write(state, &key).await {
                Ok(Some(_)) => {
                    tracing::info!(key = %key, "a replace the master died in was undone to repair a copy a reader could not be served");
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "cannot undo the replace the master died in")
                }
            }
        }
        // A copy the index does not count on (a value since replaced or
        // deleted, a key moved away) is left to gc.
        if record.state != State::Live || !record.volumes.iter().any(|v| v == volume) {
            tracing::debug!(volume, key = %key, "the reported copy is not one the index reads: left to gc");
            return;
        }
        let progress = Progress::default();
        verify::check_key(state, &progress, &params, &key, &record, &[]).await;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        if get(&progress.skipped) == 0 {
            let (repaired, failed) = (get(&progress.changed), get(&progress.failed));
            let stats = &state.repairs;
            stats.checked.fetch_add(1, Ordering::Relaxed);
            stats.repaired.fetch_add(repaired, Ordering::Relaxed);
            stats.failed.fetch_add(failed, Ordering::Relaxed);
            if get(&progress.found) == 0 && failed == 0 {
                tracing::debug!(volume, key = %key, "every copy checks good (replaced or repaired meanwhile)");
            } else if failed > 0 {
                tracing::error!(volume, key = %key, repaired, failed, "a bad copy could not be repaired (see the problems above); readers are sent to the good copies, and `verify --repair` tries again");
            } else {
                tracing::warn!(volume, key = %key, repaired, "a copy a reader could not be served was repaired from a good replica");
            }
            return;
        }
        tokio::time::sleep(BUSY_PAUSE).await;
    }
    tracing::warn!(volume, key = %key, "the key stayed busy, or its record unreadable: its damaged copy is left to its next reader or `verify --repair`");
}
