//! Marks batched per volume: the confirming marks of concurrent writes
//! (and the marks of unlinks) travel to each volume together, in one
//! `POST /-/marks`, which the volume makes durable with one shared sync —
//! instead of one request and one sync per key.
//!
//! Each volume has a queue and a task that drains it: it takes the first
//! mark waiting, plus every other mark already queued (up to
//! [`MAX_MARKS`]), and sends them; while [`IN_FLIGHT`] batches are on
//! their way, new marks wait and so form the next batch. Under no load a
//! mark goes alone, at once, as a plain `POST /-/mark`; under load the
//! batches grow with it. Every caller still gets its own mark's outcome,
//! so the write path's rules (a mark comes after the commit, a failed
//! mark does not undo a committed write) are unchanged. A mark a replica
//! missed is sent again later ([`mark_later`]).

use crate::client::{VolumeClient, VolumeError};
use crate::AppState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use trove_common::key::Key;
use trove_common::protocol::{MarkQuery, MAX_MARKS};
use trove_common::record::{BlobState, Record, State};

/// Batches per volume on their way at once.
const IN_FLIGHT: usize = 2;
/// Marks queued per volume before callers wait to queue theirs.
const QUEUED: usize = 4 * MAX_MARKS;

/// One mark and where its outcome goes.
struct Queued {
    mark: MarkQuery,
    done: oneshot::Sender<Result<(), VolumeError>>,
}

/// The mark queues, one per volume, started on first use.
pub struct MarkQueues {
    client: VolumeClient,
    queues: parking_lot::Mutex<HashMap<String, mpsc::Sender<Queued>>>,
}

impl MarkQueues {
    pub fn new(client: VolumeClient) -> MarkQueues {
        MarkQueues {
            client,
            queues: parking_lot::Mutex::default(),
        }
    }

    /// Records `mark` on `addr`, batched with other marks for that volume;
    /// returns its outcome.
    pub async fn mark(&self, addr: &str, mark: MarkQuery) -> Result<(), VolumeError> {
        let queue = {
            let mut queues = self.queues.lock();
            queues
                .entry(addr.to_string())
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(QUEUED);
                    tokio::spawn(drain(self.client.clone(), addr.to_string(), rx));
                    tx
                })
                .clone()
        };
        let (done, outcome) = oneshot::channel();
        let gone = || VolumeError::Unreachable {
            addr: addr.to_string(),
            message: "the mark queue stopped".into(),
        };
        queue.send(Queued { mark, done }).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

/// A volume's queue task: sends what is queued, in batches, until every
/// sender is gone.
async fn drain(client: VolumeClient, addr: String, mut rx: mpsc::Receiver<Queued>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        // Everything that queued up meanwhile goes along.
        let mut batch = vec![first];
        while batch.len() < MAX_MARKS {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let (client, addr) = (client.clone(), addr.clone());
        tokio::spawn(async move {
            send(&client, &addr, batch).await;
            drop(permit);
        });
    }
}

/// Sends one batch and hands each caller its outcome.
async fn send(client: &VolumeClient, addr: &str, batch: Vec<Queued>) {
    if batch.len() == 1 {
        let q = batch.into_iter().next().expect("one");
        let _ = q.done.send(client.mark_query(addr, &q.mark).await);
        return;
    }
    let marks: Vec<MarkQuery> = batch.iter().map(|q| q.mark.clone()).collect();
    match client.mark_batch(addr, &marks).await {
        Ok(outcomes) => {
            for (q, outcome) in batch.into_iter().zip(outcomes) {
                let _ = q.done.send(outcome);
            }
        }
        // A volume that does not know `/-/marks` (an older one): one by one.
        Err(VolumeError::Status {
            status: 400 | 404 | 405,
            ..
        }) => {
            let each = batch.into_iter().map(|q| async move {
                let _ = q.done.send(client.mark_query(addr, &q.mark).await);
            });
            futures::future::join_all(each).await;
        }
        Err(e) => {
            for q in batch {
                let _ = q.done.send(Err(e.clone()));
            }
        }
    }
}

/// Sends a key's marks again, with backoff, after some replica missed
/// them (it was restarting, or unreachable for a moment): `mark` is
/// [`BlobState::Live`] for a committed write's confirmation, or
/// [`BlobState::Unlinked`] for an unlink's. Until a replica has its mark,
/// its copy says otherwise — `pending` (a `rebuild` from the volumes
/// alone, the index lost before a `verify` confirmed the copy, would take
/// the write for a failed one and, for a replace, bring the old value
/// back), or `live` (a `rebuild` would revive the unlinked key).
///
/// While a replica's volume is down, it waits for it (up to
/// [`MARK_WAIT`]) without the key's lock; each of [`MARK_ATTEMPTS`]
/// attempts holds the key's lock, and stops for good unless the key still
/// reads as `record` did with that state: once it is deleted, written
/// again, or unlinked or linked since, there is nothing of this mark to
/// send (and an unlinked copy must stay unlinked). A confirmation names
/// the write, so a volume never confirms another one's copy; marking a
/// copy twice changes nothing.
pub(crate) async fn mark_later(state: Arc<AppState>, key: Key, record: Record, mark: BlobState) {
    let wanted = match mark {
        BlobState::Live => State::Live,
        BlobState::Unlinked => State::Unlinked,
        BlobState::Pending => return,
    };
    // A confirmation names its write; a value stored before writes had
    // ids has none to confirm.
    if mark == BlobState::Live && record.write.is_none() {
        return;
    }
    let write = record.write.clone();
    let give_up = tokio::time::Instant::now() + MARK_WAIT;
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    while attempt < MARK_ATTEMPTS {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
        // While a replica's volume is down, its mark would fail: wait for
        // it without the key's lock (the key would answer 409 meanwhile).
        if record.volumes.iter().any(|v| state.volumes.is_down(v)) {
            if tokio::time::Instant::now() < give_up {
                continue;
            }
            tracing::warn!(key = %key, ?mark, "a replica's volume stayed down: its mark is left {}", left_to(mark));
            return;
        }
        attempt += 1;
        // Under the key's lock, so no unlink, delete or write comes
        // between the check and the marks (a busy key: the next attempt).
        let Some(_guard) = state.locks.try_lock(&key) else {
            continue;
        };
        let current = match state.index.get(&key) {
            Ok(r) => r,
            // The index's disk stalled or busy: the next attempt.
            Err(e) if e.is_transient() && attempt < MARK_ATTEMPTS => continue,
            Err(e) => {
                tracing::warn!(key = %key, error = %e, ?mark, "cannot read the index to send a mark again: it is left {}", left_to(mark));
                return;
            }
        };
        let Some(current) = current.filter(|r| r.state == wanted && r.write == write) else {
            return;
        };
        // The replicas the record names now (a rebalance may have moved
        // some since).
        let (digests, named) = match mark {
            BlobState::Live => (Some(&record), write.as_deref()),
            _ => (None, None),
        };
        match state
            .volumes
            .mark_all(&key, &current.volumes, mark, digests, named)
            .await
        {
            Ok(()) => {
                tracing::info!(key = %key, attempt, ?mark, "every replica has the key's mark now");
                return;
            }
            Err(e) if attempt == MARK_ATTEMPTS => {
                tracing::warn!(key = %key, error = %e, ?mark, "a replica still misses the key's mark: it is left {}", left_to(mark));
            }
            Err(_) => {}
        }
    }
}

/// Attempts [`mark_later`] makes while every replica's volume is up.
const MARK_ATTEMPTS: u32 = 8;

/// How long [`mark_later`] waits for a replica's volume that is down to
/// come back before it gives the mark up.
const MARK_WAIT: Duration = Duration::from_secs(3600);

/// What becomes of a mark [`mark_later`] gives up.
fn left_to(mark: BlobState) -> &'static str {
    match mark {
        BlobState::Live => "to verify, which confirms it",
        _ => "undone: a rebuild before the key's DELETE would bring it back live",
    }
}
