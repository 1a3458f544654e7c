//! `verify`: check that every live key's replicas exist with the recorded
//! size and sha256 — from the volumes' metadata, or with `deep` by having
//! each volume re-hash the bytes (`GET /-/verify`). With `repair`, each
//! bad replica is re-copied from a good one (`POST /-/pull`, checked
//! against the recorded sha256).
//!
//! The shallow check reads every volume's listing (`/-/listing`: its
//! blobs in key order, each read from disk) alongside the index — a
//! merge-join of sorted streams — so a replica the listing shows with the
//! recorded size, sha256 and write, servable, costs no request. Any other
//! replica (absent from the listing, different, faulty, or on a volume
//! whose listing is not there) is checked on its own with a `HEAD`, which
//! decides, exactly as before listings: so a key written after its
//! volume's listing went past it is found, not reported missing.

use super::{JobParams, Pages, Progress};
use crate::client::VolumeError;
use crate::listing::Cursor;
use crate::AppState;
use futures::StreamExt;
use std::collections::HashMap;
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
    let walked = walk(&state, &progress, &params).await;
    // A full repair with nothing left failing: volumes that lost their
    // data before it started hold every key again.
    if walked.is_ok()
        && params.repair
        && !progress.cancelled()
        && progress.failed.load(Ordering::Relaxed) == 0
    {
        state.volumes.data_restored(started);
        state.volumes.save_disks(&state.index).await;
    }
    walked
}

/// Walks the index in pages; with a shallow check, screens each page's
/// replicas against the volumes' listings first (in key order, one key
/// at a time), then checks the page's keys `concurrency` at a time.
async fn walk(state: &AppState, progress: &Progress, params: &JobParams) -> anyhow::Result<()> {
    let mut listings = if params.deep {
        HashMap::new()
    } else {
        open_listings(state).await
    };
    let pace = &params.pace();
    // A shallow verify screens keys against the listings a batch at a
    // time (see `read_ahead`); a deep one reads no listing and takes its
    // pages whole.
    let batch = if params.deep {
        usize::MAX
    } else {
        params.read_ahead()
    };
    let mut pages = Pages::default();
    while let Some(page) = pages.next(state, progress).await? {
        let mut page = page.into_iter().peekable();
        while page.peek().is_some() && !progress.cancelled() {
            let mut screened = vec![];
            for (key, record) in page.by_ref().take(batch) {
                let record = match record.state {
                    State::Live => record,
                    // A replace of a live value: readers still get that
                    // value, which must be checked like any other.
                    State::Writing if record.settled().is_some_and(|r| r.state == State::Live) => {
                        match settle_write(state, progress, params, &key, &record).await {
                            Some(live) => live,
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                let mut listed = Vec::with_capacity(record.volumes.len());
                for addr in &record.volumes {
                    listed.push(listed_good(&mut listings, addr, &key, &record).await);
                }
                screened.push((key, record, listed));
            }
            // Keys in hand finish; no new one starts once cancelled.
            futures::stream::iter(screened)
                .take_while(|_| futures::future::ready(!progress.cancelled()))
                .for_each_concurrent(params.concurrency(), |(key, record, listed)| async move {
                    if !pace.turn(progress).await {
                        return;
                    }
                    Progress::add(&progress.scanned, 1);
                    Progress::add(&progress.bytes, record.size * record.volumes.len() as u64);
                    check_key(state, progress, params, &key, &record, &listed).await;
                })
                .await;
        }
    }
    Ok(())
}

/// The live record to check of `key`, found *writing* over a live value
/// (`seen`): a replace in progress is skipped (counted, its value checked
/// by the next run), one committed since is checked. A dead one — the
/// master died in it, or it failed and its clean-up has not finished:
/// readers get the old value from volumes that keep the new copy too —
/// is undone by a `--repair` run and the value it replaced checked; a run
/// that repairs nothing reports it and fails, since that value went
/// unchecked.
async fn settle_write(
    state: &AppState,
    progress: &Progress,
    params: &JobParams,
    key: &Key,
    seen: &Record,
) -> Option<Record> {
    {
        // Under the key's lock, the record as it is now: the page that
        // showed it may be seconds old.
        let Some(_guard) = state.locks.try_lock(key) else {
            Progress::add(&progress.skipped, 1);
            return None;
        };
        match state.index.get(key) {
            Ok(Some(r)) if r.state == State::Live => return Some(r),
            Ok(Some(r)) if r.state == State::Writing && r.write == seen.write => {}
            _ => {
                Progress::add(&progress.skipped, 1);
                return None;
            }
        }
    }
    if !params.repair {
        Progress::add(&progress.failed, 1);
        progress.problem(format!(
            "{key}: not checked: a replace that failed (or that the master died in) is not undone yet (`verify --repair` or `gc` undoes it)"
        ));
        return None;
    }
    match super::gc::undo_dead_write(state, key).await {
        Ok(undone) => {
            if let Some((blobs, _)) = undone {
                progress.problem(format!(
                    "{key}: a replace that failed (or that the master died in) was undone ({blobs} copies removed)"
                ));
            }
            match state.index.get(key) {
                Ok(Some(r)) if r.state == State::Live => Some(r),
                // Written or deleted meanwhile.
                _ => {
                    Progress::add(&progress.skipped, 1);
                    None
                }
            }
        }
        Err(e) => {
            Progress::add(&progress.failed, 1);
            progress.problem(format!("{key}: not checked: cannot undo the failed replace: {e}"));
            None
        }
    }
}

/// A cursor over the listing of every healthy volume that answers; the
/// others' replicas are checked one by one.
async fn open_listings(state: &AppState) -> HashMap<String, Option<Cursor>> {
    let client = state.volumes.client();
    let mut listings = HashMap::new();
    for (spec, health) in state.volumes.snapshot() {
        let cursor = if health.healthy {
            match client.listing(&spec.addr).await {
                Ok(stream) => Some(Cursor::start(spec.addr.clone(), stream)),
                Err(e) => {
                    tracing::warn!(volume = %spec.addr, error = %e, "no listing: its replicas are checked one by one");
                    None
                }
            }
        } else {
            None
        };
        listings.insert(spec.addr, cursor);
    }
    listings
}

/// Whether `addr`'s listing shows the replica good — present, servable,
/// with the recorded size and write, and the recorded sha256 (or none
/// yet: an unconfirmed copy); then whether it is unconfirmed. `None`
/// when it does not (or there is no listing): the replica is checked on
/// its own.
async fn listed_good(
    listings: &mut HashMap<String, Option<Cursor>>,
    addr: &str,
    key: &Key,
    record: &Record,
) -> Option<bool> {
    let slot = listings.get_mut(addr)?;
    let cursor = slot.as_mut()?;
    match cursor.seek(key.as_str()).await {
        Ok(Some(e)) => {
            let m = &e.meta;
            let same = m.size == record.size
                && (m.sha256.is_empty() || m.sha256 == record.sha256)
                && (record.write.is_none() || m.write == record.write);
            (same && e.servable()).then_some(m.state == BlobState::Pending)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(volume = %addr, error = %format!("{e:#}"), "listing broke off: the rest of its replicas are checked one by one");
            *slot = None;
            None
        }
    }
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
        match client.head(addr, key, None).await {
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

/// Checks one key's replicas and acts on what it finds. `listed[i]` is
/// what the listing of `record.volumes[i]` showed: `Some(pending)` for a
/// good copy; `None` (or a short slice) to check it with a request.
pub(crate) async fn check_key(
    state: &AppState,
    progress: &Progress,
    params: &JobParams,
    key: &Key,
    record: &Record,
    listed: &[Option<bool>],
) {
    let checks = record.volumes.iter().enumerate().map(|(i, a)| async move {
        match listed.get(i).copied().flatten() {
            Some(pending) => Replica::Good { pending },
            // A volume the master has marked down is not asked: a frozen
            // one would hold every key for the stall timeout.
            None if state.volumes.is_down(a) => Replica::Unchecked(VolumeError::Unreachable {
                addr: a.clone(),
                message: "marked down (its health poll fails), not asked".into(),
            }),
            None => check_replica(state, params.deep, key, record, a).await,
        }
    });
    let results = futures::future::join_all(checks).await;
    let mut good = vec![];
    let mut bad = vec![];
    let mut unconfirmed = vec![];
    let mut unchecked = 0;
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
                // the run's exit code says the check is incomplete. (A
                // volume marked down keeps the reason its poll gave.)
                if !state.volumes.is_down(addr) {
                    state.volumes.note_error(&e);
                }
                unchecked += 1;
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
    let mut repairing = params.repair && !bad.is_empty();
    if repairing && good.is_empty() {
        Progress::add(&progress.failed, bad.len() as u64);
        if unchecked > 0 {
            progress.problem(format!(
                "{key}: no good replica reached to repair from ({unchecked} could not be checked: run again once their volumes answer)"
            ));
            return;
        }
        // Nothing to repair from: the damage is recorded, as a check
        // records it, so that readers get the master's `503` instead of
        // being sent to copies their volumes refuse.
        progress.problem(format!("{key}: no good replica left to repair from"));
        repairing = false;
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
        match client
            .mark(addr, key, BlobState::Live, Some(record), record.write.as_deref())
            .await
        {
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
    // Readers are never sent to a known-bad copy. When every copy is bad
    // the key cannot be read anyway; recording it says so (the master then
    // answers `503` naming the damage, where it sent readers to copies
    // their volumes refuse), and a later verify that finds a copy good
    // again takes it off the list.
    if same_set(&still_bad, &record.damaged) {
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
