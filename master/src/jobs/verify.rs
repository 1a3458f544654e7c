//! `verify`: check that every live key's replicas exist with the recorded
//! size and sha256 — from the volumes' sidecars (`HEAD`), or with `deep`
//! by having each volume re-hash the bytes (`GET /-/verify`). With
//! `repair`, each bad replica is re-copied from a good one (`POST
//! /-/pull`, checked against the recorded sha256).

use super::{for_each_record, JobParams, Progress};
use crate::client::VolumeError;
use crate::AppState;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use trove_common::key::Key;
use trove_common::record::{now_ms, BlobState, Record, State};

/// The state of one replica.
enum Replica {
    /// The right bytes; `pending` when the volume never received the
    /// write's confirmation (its mark failed after the commit).
    Good {
        pending: bool,
    },
    Missing,
    Corrupt(String),
    /// Could not be checked (volume down or failing).
    Unchecked(VolumeError),
}

pub async fn run(state: Arc<AppState>, params: JobParams, progress: Arc<Progress>) -> anyhow::Result<()> {
    let started = now_ms();
    Progress::add(&progress.total, state.index.counts().live.max(0) as u64);
    let walked = for_each_record(&state, &progress, params.concurrency(), |key, record| {
        let (state, progress, params) = (&state, &progress, &params);
        async move {
            if record.state != State::Live {
                return;
            }
            Progress::add(&progress.scanned, 1);
            Progress::add(&progress.bytes, record.size * record.volumes.len() as u64);
            check_key(state, progress, params, &key, &record).await;
        }
    })
    .await;
    // A full repair with nothing left failing: volumes that lost their
    // data before it started hold every key again.
    if walked.is_ok()
        && params.repair
        && !progress.cancelled()
        && progress.failed.load(Ordering::Relaxed) == 0
    {
        state.volumes.data_restored(started);
    }
    walked
}

async fn check_replica(state: &AppState, deep: bool, key: &Key, record: &Record, addr: &str) -> Replica {
    let client = state.volumes.client();
    if deep {
        match client.verify(addr, key, record.size).await {
            Ok(None) => Replica::Missing,
            Ok(Some(v)) if !v.ok => Replica::Corrupt(format!(
                "bytes hash to {} ({} bytes), stored as {}",
                v.actual_sha256, v.actual_size, v.meta.sha256
            )),
            // An unconfirmed copy of a master write does not know its
            // sha256 yet (the confirmation carries it): its bytes' own
            // hash is compared instead.
            Ok(Some(v)) if v.actual_sha256 != record.sha256 || v.actual_size != record.size => {
                Replica::Corrupt(format!(
                    "holds {} ({} bytes), the index records {} ({} bytes)",
                    v.actual_sha256, v.actual_size, record.sha256, record.size
                ))
            }
            Ok(Some(v)) => Replica::Good {
                pending: v.meta.state == BlobState::Pending,
            },
            Err(e) => unservable(e),
        }
    } else {
        match client.head(addr, key).await {
            Ok(None) => Replica::Missing,
            // A copy that does not know its sha256 yet (unconfirmed) is
            // checked by its size here, by its bytes with --deep.
            Ok(Some(s))
                if s.size != record.size || s.sha256.is_some_and(|h| hex::encode(h) != record.sha256) =>
            {
                Replica::Corrupt(format!(
                    "holds {} ({} bytes), the index records {} ({} bytes)",
                    s.sha256.map(hex::encode).unwrap_or_default(),
                    s.size,
                    record.sha256,
                    record.size
                ))
            }
            Ok(Some(s)) => Replica::Good { pending: s.pending },
            Err(e) => unservable(e),
        }
    }
}

/// A replica whose volume answered, but with an error: it cannot serve
/// this copy (a copy its own verify found bad, an unreadable sidecar, a
/// truncated file, a read error), so readers must not be sent there. Only
/// a volume that did not answer leaves the replica unchecked.
fn unservable(e: VolumeError) -> Replica {
    match e {
        VolumeError::Status { status, message, .. } if status >= 500 => {
            Replica::Corrupt(format!("its volume cannot serve it ({status}: {message})"))
        }
        e => Replica::Unchecked(e),
    }
}

async fn check_key(state: &AppState, progress: &Progress, params: &JobParams, key: &Key, record: &Record) {
    let checks = record
        .volumes
        .iter()
        .map(|a| check_replica(state, params.deep, key, record, a));
    let results = futures::future::join_all(checks).await;
    let mut good = vec![];
    let mut bad = vec![];
    let mut unconfirmed = vec![];
    for (addr, r) in record.volumes.iter().zip(results) {
        match r {
            Replica::Good { pending } => {
                good.push(addr.clone());
                if pending {
                    unconfirmed.push(addr.clone());
                }
            }
            Replica::Missing => {
                progress.problem(format!("{key}: replica on {addr} is missing"));
                bad.push(addr.clone());
            }
            Replica::Corrupt(why) => {
                progress.problem(format!("{key}: replica on {addr} is corrupt: {why}"));
                bad.push(addr.clone());
            }
            Replica::Unchecked(e) => {
                // Not knowing is not "fine": it counts as a failure, so
                // the run's exit code says the check is incomplete.
                state.volumes.note_error(&e);
                Progress::add(&progress.failed, 1);
                progress.problem(format!("{key}: replica on {addr} not checked: {e}"));
                // What was known to be damaged stays so.
                if record.damaged.contains(addr) {
                    bad.push(addr.clone());
                }
            }
        }
    }
    Progress::add(
        &progress.found,
        bad.iter().filter(|a| !good.contains(a)).count() as u64,
    );
    let repairing = params.repair && !bad.is_empty();
    if repairing && good.is_empty() {
        Progress::add(&progress.failed, bad.len() as u64);
        progress.problem(format!("{key}: no good replica left to repair from"));
        return;
    }
    if !repairing && same_set(&bad, &record.damaged) && unconfirmed.is_empty() {
        return;
    }
    let Some(_guard) = state.locks.try_lock(key) else {
        Progress::add(&progress.skipped, 1);
        return;
    };
    // Under the lock, the record must still be the one checked.
    match state.index.get(key) {
        Ok(Some(r)) if r == *record => {}
        _ => {
            Progress::add(&progress.skipped, 1);
            return;
        }
    }
    // A live key's copy still marked pending lost its confirmation (the
    // mark failed after the index committed): confirm it now, so that
    // `rebuild` counts it and the volume drops the value it replaced.
    let client = state.volumes.client();
    for addr in &unconfirmed {
        match client.mark(addr, key, BlobState::Live, Some(record), None).await {
            // Not counted as a change: `changed` pays for `found`.
            Ok(()) => progress.problem(format!(
                "{key}: replica on {addr} confirmed (its confirmation had not arrived)"
            )),
            Err(e) => {
                Progress::add(&progress.failed, 1);
                progress.problem(format!("{key}: cannot confirm the replica on {addr}: {e}"));
            }
        }
    }
    let mut still_bad = bad.clone();
    if repairing {
        for addr in &bad {
            match client.pull(addr, key, &good[0], record).await {
                Ok(()) => {
                    still_bad.retain(|a| a != addr);
                    Progress::add(&progress.changed, 1);
                    progress.problem(format!("{key}: replica on {addr} repaired from {}", good[0]));
                }
                Err(e) => {
                    Progress::add(&progress.failed, 1);
                    progress.problem(format!("{key}: repair of {addr} from {} failed: {e}", good[0]));
                }
            }
        }
    }
    // Readers are never sent to a known-bad copy — unless every copy is
    // bad, when marking would only make the key unreadable.
    if good.is_empty() || same_set(&still_bad, &record.damaged) {
        return;
    }
    let updated = Record {
        damaged: still_bad,
        ..record.clone()
    };
    if let Err(e) = state.index.put(key, updated, Some(record.counted_state())).await {
        Progress::add(&progress.failed, 1);
        progress.problem(format!("{key}: cannot record damaged replicas: {e}"));
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}
