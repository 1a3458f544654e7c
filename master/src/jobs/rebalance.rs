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
//!
//! A home volume that holds no good copy of a key it is recorded on — the
//! copy found damaged, or the volume emptied since the key was written (a
//! replaced disk, or a volume added back at an address used before) — is
//! given a fresh copy the same way. A run that ends with every key in
//! place therefore tells the master that such volumes hold their keys
//! again, as a `verify --repair` would.
//!
//! A key the job cannot move is a failure, reported with what the operator
//! must do (bring a volume back, run again) and with how many replicas it
//! is left with when that is fewer than `--replicas`: a job that leaves a
//! key under-replicated never ends with exit code 0. Only a key busy with
//! a client's write or delete, which keeps its full replica count
//! meanwhile, is merely skipped (a later run moves it).

use super::{for_each_record, JobParams, Progress};
use crate::client::VolumeError;
use crate::index::IndexError;
use crate::locks::KeyGuard;
use crate::AppState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use trove_common::key::Key;
use trove_common::record::{now_ms, Record, State};

/// How long old copies outlive the switch of a record to its new volumes:
/// longer than a client takes to follow a redirect.
pub const DRAIN: Duration = Duration::from_secs(2);

/// How long a key busy with a client's write or delete is waited for
/// before it is left for a later run: most such operations are over by
/// then, and the key is moved in this run after all.
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// Why a key could not be moved (the job reports it and goes on).
#[derive(Debug, thiserror::Error)]
enum MoveError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("no healthy replica to copy from (stored on {stored})")]
    NoSource { stored: String },
    #[error("copy to {dest} from {from} failed: {source}")]
    Copy {
        dest: String,
        from: String,
        source: VolumeError,
    },
    #[error("its home volume {} down", is_or_are(.down))]
    HomeDown { down: Vec<String> },
}

impl MoveError {
    /// What the operator should do about it.
    fn remedy(&self) -> String {
        match self {
            MoveError::HomeDown { down } => format!(
                "run rebalance again once {} back (one gone for good: restart the master \
                 without it first)",
                is_or_are(down)
            ),
            MoveError::NoSource { .. } => "run rebalance again once one of them answers".into(),
            MoveError::Copy { dest, from, .. } => {
                format!("run rebalance again once {dest} can take it and {from} serves it")
            }
            MoveError::Index(_) => "run rebalance again".into(),
        }
    }
}

/// "a is" or "a, b are".
fn is_or_are(addrs: &[String]) -> String {
    let verb = if addrs.len() == 1 { "is" } else { "are" };
    format!("{} {verb}", addrs.join(", "))
}

/// What happened to one key.
enum Outcome {
    /// Copied to `copies` new volumes; `old` copies are to be removed.
    Moved { copies: u64, old: Vec<String> },
    /// Already in place (or deleted meanwhile).
    InPlace,
    /// Not touched: the key is busy (a client's write or delete holds
    /// it, or a replace the master died in is still recorded). Left for a
    /// later run, which the operator must start (`remedy`) only if the key
    /// lacks replicas meanwhile.
    Busy { why: &'static str, remedy: &'static str },
}

pub async fn run(state: Arc<AppState>, params: JobParams, progress: Arc<Progress>) -> anyhow::Result<()> {
    let started = now_ms();
    Progress::add(&progress.total, state.index.counts().live.max(0) as u64);
    let removals = parking_lot::Mutex::new(JoinSet::new());
    let pace = params.pace();
    // Keys this run leaves with fewer than `--replicas` replicas.
    let short = AtomicU64::new(0);
    let walked = for_each_record(&state, &progress, params.concurrency(), |key, record| {
        let (state, progress, params, removals, pace, short) =
            (&state, &progress, &params, &removals, &pace, &short);
        async move {
            // A key being replaced reads as its old value, and is that
            // value's key to move (once the replace is over).
            let Some(record) = record.settled().filter(|r| r.state == State::Live) else {
                return;
            };
            Progress::add(&progress.scanned, 1);
            let home = home_of(state, &key);
            let missing = missing_at_home(state, &home, record);
            let new_copies = missing.len() as u64;
            if new_copies == 0 && home.len() == record.volumes.len() {
                return;
            }
            if params.dry_run {
                // What the real run would fail on before copying anything.
                let down = down_of(state, &home);
                if !down.is_empty() {
                    let e = MoveError::HomeDown { down };
                    Progress::add(&progress.failed, 1);
                    progress.problem(format!("{key}: would not move: {e}; {}", e.remedy()));
                    return;
                }
                Progress::add(&progress.changed, 1);
                Progress::add(&progress.bytes, record.size * new_copies);
                progress.would(dry_run_line(&key, record, &home, &missing));
                return;
            }
            if !pace.turn(progress).await {
                return;
            }
            let (why, remedy, busy) = match move_key(state, &key).await {
                Ok(Outcome::Moved { copies, old }) => {
                    Progress::add(&progress.changed, 1);
                    Progress::add(&progress.bytes, record.size * copies);
                    let (state, progress) = (Arc::clone(state), Arc::clone(progress));
                    let mut removals = removals.lock();
                    removals.spawn(remove_old_copies(state, progress, key, old));
                    return;
                }
                Ok(Outcome::InPlace) => return,
                Ok(Outcome::Busy { why, remedy }) => (why.to_string(), remedy.to_string(), true),
                Err(e) => (e.to_string(), e.remedy(), false),
            };
            // Left where it is. A busy key that keeps all its replicas is
            // harmless (skipped); anything else the operator must hear of,
            // and the job fails.
            let shortfall = under_replicated(state, &key);
            if busy && shortfall.is_none() {
                Progress::add(&progress.skipped, 1);
                tracing::debug!(key = %key, why = %why, "rebalance skipped a key");
                return;
            }
            Progress::add(&progress.failed, 1);
            let shortfall = match shortfall {
                Some(s) => {
                    short.fetch_add(1, Ordering::Relaxed);
                    format!("; {s}")
                }
                None => String::new(),
            };
            progress.problem(format!("{key}: not moved: {why}{shortfall}; {remedy}"));
        }
    })
    .await;
    // Old copies still waiting for their drain are removed before the job
    // reports done (also when it was stopped).
    let mut removals = removals.into_inner();
    while removals.join_next().await.is_some() {}
    // Every key in place, none left for later: volumes that lost their
    // data before the run started hold their keys again (each one's keys
    // were given fresh copies above).
    if walked.is_ok()
        && !params.dry_run
        && !progress.cancelled()
        && progress.failed.load(Ordering::Relaxed) == 0
        && progress.skipped.load(Ordering::Relaxed) == 0
    {
        state.volumes.data_restored(started);
        state.volumes.save_disks(&state.index).await;
    }
    let short = short.into_inner();
    if short > 0 {
        progress.conclude(format!(
            "{short} key(s) left under-replicated (fewer than {} replicas on the master's \
             volumes), each named above: bring back the volumes named there and run rebalance \
             again (a volume gone for good: restart the master without it first)",
            state.volumes.placement().replicas()
        ));
    }
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

/// The key's lock, waiting up to `wait` for a client's write or delete
/// to release it; `None` if it is still held then.
async fn lock_within(state: &AppState, key: &Key, wait: Duration) -> Option<KeyGuard> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(guard) = state.locks.try_lock(key) {
            return Some(guard);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Why the key, as it reads now, has fewer than `--replicas` replicas on
/// the master's volumes, told for the operator; `None` when it has them
/// all (or no longer reads as live). A copy on a volume that is down
/// counts (it holds its copy until it is back); one on a volume no longer
/// in the list, one found damaged and one on a volume emptied since do
/// not.
fn under_replicated(state: &AppState, key: &Key) -> Option<String> {
    let record = state.index.get(key).ok()??;
    let record = record.settled().filter(|r| r.state == State::Live)?;
    let placement = state.volumes.placement();
    let want = placement.replicas();
    let (mut have, mut details) = (0, vec![]);
    for addr in &record.volumes {
        if !placement.volumes().iter().any(|v| v.addr == *addr) {
            details.push(format!("{addr} is not one of the master's volumes"));
        } else if record.damaged.contains(addr) {
            details.push(format!("the copy on {addr} is damaged"));
        } else if !state.volumes.kept_data(addr, record.created) {
            details.push(format!("{addr} has lost its data since"));
        } else {
            have += 1;
            let down = if state.volumes.is_healthy(addr) {
                ""
            } else {
                ", down"
            };
            details.push(format!("on {addr}{down}"));
        }
    }
    (have < want).then(|| {
        format!(
            "under-replicated: {have} of {want} replicas ({})",
            details.join("; ")
        )
    })
}

/// The volumes of `home` that lack a good copy of the key `record`
/// describes: not among its replicas, or holding one found damaged or on
/// a volume emptied since the key was written.
fn missing_at_home<'a>(state: &AppState, home: &'a [String], record: &Record) -> Vec<&'a String> {
    let readable = record.readable();
    home.iter()
        .filter(|a| !readable.contains(a) || !state.volumes.kept_data(a, record.created))
        .collect()
}

/// What a dry run says the real run would do with `key`: the home
/// volumes that would get a copy, and the copies it would delete.
fn dry_run_line(key: &Key, record: &Record, home: &[String], missing: &[&String]) -> String {
    let list = |v: &[&String]| v.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ");
    let dropped: Vec<&String> = record.volumes.iter().filter(|a| !home.contains(a)).collect();
    let mut line = format!("would move {key} ({})", indicatif::HumanBytes(record.size));
    if !missing.is_empty() {
        line.push_str(&format!(": a copy to {}", list(missing)));
    }
    if !dropped.is_empty() {
        line.push_str(&format!(
            "{} the copy on {}",
            if missing.is_empty() {
                ": delete"
            } else {
                ", delete"
            },
            list(&dropped)
        ));
    }
    line
}

/// The volumes of `home` that are down.
fn down_of(state: &AppState, home: &[String]) -> Vec<String> {
    home.iter()
        .filter(|a| !state.volumes.is_healthy(a))
        .cloned()
        .collect()
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
    let Some(_guard) = lock_within(state, key, BUSY_WAIT).await else {
        return Ok(Outcome::Busy {
            why: "a write or delete holds the key",
            remedy: "run rebalance again",
        });
    };
    // Re-read under the lock: the key may have changed since the scan.
    let record = match state.index.get(key) {
        Ok(Some(r)) if r.state == State::Live => r,
        // With its lock free, a replace still recorded is one the master
        // died in: gc (or a DELETE) undoes it, then the key can move.
        Ok(Some(r)) if r.settled().is_some_and(|s| s.state == State::Live) => {
            return Ok(Outcome::Busy {
                why: "a replace the master died in is still recorded",
                remedy: "run gc (it undoes that write), then rebalance again",
            })
        }
        Ok(_) => return Ok(Outcome::InPlace),
        Err(e) => return Err(e.into()),
    };
    let home = home_of(state, key);
    // Copies go to each home volume without a good one (see the module's
    // notes); a key with all of them, and no others, is in place.
    let targets = missing_at_home(state, &home, &record);
    if targets.is_empty() && home.len() == record.volumes.len() {
        return Ok(Outcome::InPlace);
    }
    let down = down_of(state, &home);
    if !down.is_empty() {
        return Err(MoveError::HomeDown { down });
    }
    let client = state.volumes.client();
    // The copies to pull from: the good ones (the record must never come
    // to name only volumes that lack the value while the good copies
    // elsewhere are removed).
    let readable: Vec<String> = record
        .readable()
        .into_iter()
        .filter(|a| state.volumes.kept_data(a, record.created))
        .collect();
    let (record, readable) = (&record, &readable);
    let copies = targets.iter().map(|dest| async move {
        let source = state
            .volumes
            .source_for(readable, record.created, dest)
            .await
            .ok_or_else(|| MoveError::NoSource {
                stored: record.volumes.join(","),
            })?;
        client.pull(dest, key, &source, record).await.map_err(|e| {
            state.volumes.note_error(&e);
            MoveError::Copy {
                dest: dest.to_string(),
                from: source.clone(),
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
