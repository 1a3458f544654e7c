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
//! mark does not undo a committed write) are unchanged.

use crate::client::{VolumeClient, VolumeError};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};
use trove_common::protocol::{MarkQuery, MAX_MARKS};

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
