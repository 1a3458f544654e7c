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
/// Sent by [`again_later`]: only while the key still reads as `record`
/// did with that state — once it is deleted, written again, or unlinked
/// or linked since, there is nothing of this mark to send (and an
/// unlinked copy must stay unlinked). A confirmation names the write, so
/// a volume never confirms another one's copy; marking a copy twice
/// changes nothing.
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
    let (what, left) = match mark {
        BlobState::Live => (
            "the confirmation of the key's copies",
            "to verify, which confirms it",
        ),
        _ => (
            "the unlink mark of the key's copies",
            "undone: a rebuild before the key's DELETE would bring it back live",
        ),
    };
    let write = record.write.clone();
    again_later(&state, &key, &record.volumes, what, left, |current| {
        let (state, key, record, write) = (&state, &key, &record, &write);
        async move {
            let Some(current) = current.filter(|r| r.state == wanted && r.write == *write) else {
                return Again::Moot;
            };
            // The replicas the record names now (a rebalance may have
            // moved some since).
            let (digests, named) = match mark {
                BlobState::Live => (Some(record), write.as_deref()),
                _ => (None, None),
            };
            match state
                .volumes
                .mark_all(key, &current.volumes, mark, digests, named)
                .await
            {
                Ok(()) => Again::Done,
                Err(e) => Again::Failed(e.to_string()),
            }
        }
    })
    .await;
}

/// What one attempt of [`again_later`] came to.
pub(crate) enum Again {
    Done,
    /// The key changed since: nothing left to send.
    Moot,
    Failed(String),
}

/// Runs `attempt` — something `volumes` missed about `key` (`what`), sent
/// again — with backoff until it is done, moot, or has failed
/// [`MARK_ATTEMPTS`] times while every volume was up; `left` says what
/// becomes of it then. While one of `volumes` is down, it waits for it (up
/// to [`MARK_WAIT`]) without the key's lock. Each attempt holds the key's
/// lock (a busy key: the next attempt) and is given the key's record as
/// the index has it then, so no write, unlink or delete comes between its
/// look and its calls.
pub(crate) async fn again_later<F, Fut>(
    state: &AppState,
    key: &Key,
    volumes: &[String],
    what: &str,
    left: &str,
    mut attempt: F,
) where
    F: FnMut(Option<Record>) -> Fut,
    Fut: std::future::Future<Output = Again>,
{
    let give_up = tokio::time::Instant::now() + MARK_WAIT;
    let mut delay = Duration::from_millis(200);
    let mut n = 0;
    while n < MARK_ATTEMPTS {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
        if volumes.iter().any(|v| state.volumes.is_down(v)) {
            if tokio::time::Instant::now() < give_up {
                continue;
            }
            tracing::warn!(key = %key, "a replica's volume stayed down: {what} is left {left}");
            return;
        }
        n += 1;
        let Some(_guard) = state.locks.try_lock(key) else {
            continue;
        };
        let current = match state.index.get(key) {
            Ok(r) => r,
            // The index's disk stalled or busy: the next attempt.
            Err(e) if e.is_transient() && n < MARK_ATTEMPTS => continue,
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "cannot read the index to send {what} again: it is left {left}");
                return;
            }
        };
        match attempt(current).await {
            Again::Done => {
                tracing::info!(key = %key, attempt = n, "{what}: done now");
                return;
            }
            Again::Moot => return,
            Again::Failed(e) if n == MARK_ATTEMPTS => {
                tracing::warn!(key = %key, error = %e, "a replica still misses {what}: it is left {left}");
            }
            // A volume that failed the call is marked down at once: this
            // attempt does not count, and the wait for it begins.
            Again::Failed(_) if volumes.iter().any(|v| state.volumes.is_down(v)) => n -= 1,
            Again::Failed(_) => {}
        }
    }
}

/// Attempts [`again_later`] makes while every replica's volume is up.
const MARK_ATTEMPTS: u32 = 8;

/// How long [`again_later`] waits for a replica's volume that is down to
/// come back before it gives up.
const MARK_WAIT: Duration = Duration::from_secs(3600);
