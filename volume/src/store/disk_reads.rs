//! The GET reads of one data dir that go to its disk: how many may wait on
//! it at once, and how long the oldest of them has been waiting — what
//! tells a disk that stopped answering from one that is only busy.
//!
//! A read of a block that is not in memory runs on the blocking pool
//! (never on a thread serving HTTP), holding one of its data dir's
//! [`DISK_READS_PER_DIR`] slots, so that a hung disk holds at most that
//! many of the pool's threads; finding and opening a blob (its metadata
//! read) holds one of as many other slots, so that reads stuck on bytes
//! do not keep blobs whose bytes are cached from being served. While a
//! read holds its slot, its start time is on record here: `/-/status` reports a data dir whose oldest read has
//! waited longer than the stall timeout (`stalled_ms`), and the master
//! then takes the volume out of service until the disk answers again.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// GET reads that may wait on one data dir's disk at once, on the
/// blocking pool: a hung disk holds at most this many of its threads
/// (tokio's pool has 512), so writes, deletes and reads of the other dirs
/// still find threads.
pub const DISK_READS_PER_DIR: usize = 64;

/// What a read of the disk is for: each kind has slots of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// Finding and opening a blob: its metadata.
    Open,
    /// A block of a blob's bytes.
    Block,
}

/// One data dir's disk reads (see the module's documentation).
#[derive(Debug)]
pub struct DiskReads {
    /// Slots for opens, and for block reads.
    slots: [Arc<Semaphore>; 2],
    /// When each read holding a slot started, by a number of its own.
    in_flight: Mutex<BTreeMap<u64, Instant>>,
    next: AtomicU64,
}

impl Default for DiskReads {
    fn default() -> Self {
        DiskReads {
            slots: [(); 2].map(|()| Arc::new(Semaphore::new(DISK_READS_PER_DIR))),
            in_flight: Mutex::default(),
            next: AtomicU64::new(0),
        }
    }
}

/// A read of the disk: holds its slot until dropped, and its start time
/// on record from [`DiskRead::begin`] on.
#[derive(Debug)]
pub struct DiskRead {
    _slot: OwnedSemaphorePermit,
    reads: Arc<DiskReads>,
    id: Option<u64>,
}

impl DiskRead {
    /// The read begins: called on the thread that reads, so that the time
    /// spent waiting for a thread of the pool (busy with uploads, say) is
    /// not taken for the disk's.
    pub fn begin(&mut self) {
        // Numbered and timed under the lock: ids then order start times.
        let mut in_flight = self.reads.in_flight.lock();
        let id = self.reads.next.fetch_add(1, Ordering::Relaxed);
        in_flight.insert(id, Instant::now());
        self.id = Some(id);
    }
}

impl Drop for DiskRead {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.reads.in_flight.lock().remove(&id);
        }
    }
}

impl DiskReads {
    /// Waits at most `wait` for a slot of `kind`; `None` if none came free
    /// (the disk is not answering the reads that hold them all).
    pub async fn start(self: &Arc<Self>, kind: ReadKind, wait: Duration) -> Option<DiskRead> {
        let slots = &self.slots[kind as usize];
        let slot = tokio::time::timeout(wait, Arc::clone(slots).acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(DiskRead {
            _slot: slot,
            reads: Arc::clone(self),
            id: None,
        })
    }

    /// How long the oldest read in progress has been waiting on the disk.
    pub fn oldest(&self) -> Option<Duration> {
        // Ids grow with start times: the first entry started first.
        let in_flight = self.in_flight.lock();
        in_flight.values().next().map(Instant::elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn begun(reads: &Arc<DiskReads>) -> DiskRead {
        let mut read = reads
            .start(ReadKind::Block, Duration::from_secs(1))
            .await
            .unwrap();
        read.begin();
        read
    }

    #[tokio::test]
    async fn the_oldest_read_in_progress_is_reported_and_slots_run_out() {
        let reads = Arc::new(DiskReads::default());
        assert_eq!(reads.oldest(), None);
        let waiting = reads
            .start(ReadKind::Block, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(reads.oldest(), None, "a slot held, no read begun");
        drop(waiting);
        let before_first = Instant::now();
        let first = begun(&reads).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut rest = Vec::new();
        for _ in 1..DISK_READS_PER_DIR {
            rest.push(begun(&reads).await);
        }
        assert!(
            reads.oldest().unwrap() >= Duration::from_millis(20),
            "the first read's age"
        );
        let more = reads.start(ReadKind::Block, Duration::from_millis(10)).await;
        assert!(more.is_none(), "every slot is held");
        drop(first);
        // Now the oldest is a read begun at least 20 ms after the first.
        let oldest = reads.oldest().unwrap();
        assert!(
            oldest + Duration::from_millis(20) <= before_first.elapsed(),
            "the next oldest, begun after the first"
        );
        let more = reads.start(ReadKind::Block, Duration::from_millis(10)).await;
        assert!(more.is_some(), "a slot came free");
        let open = reads.start(ReadKind::Open, Duration::from_millis(10)).await;
        assert!(open.is_some(), "opens have slots of their own");
        drop((more, open, rest));
        assert_eq!(reads.oldest(), None);
    }
}
