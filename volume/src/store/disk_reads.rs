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
//! read runs, its start time is on record here: `/-/status` reports a
//! data dir whose oldest read has waited longer than the stall timeout
//! (`stalled_ms`), and the master then sends writers and readers
//! elsewhere until the disk answers again.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
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
    in_flight: Mutex<InFlight>,
}

/// The reads running, by a number given in the order they began.
#[derive(Debug, Default)]
struct InFlight {
    next: u64,
    started: BTreeMap<u64, Instant>,
}

impl Default for DiskReads {
    fn default() -> Self {
        DiskReads {
            slots: [(); 2].map(|()| Arc::new(Semaphore::new(DISK_READS_PER_DIR))),
            in_flight: Mutex::default(),
        }
    }
}

/// A read running: its slot and its start time, given back when dropped.
struct Running {
    _slot: OwnedSemaphorePermit,
    reads: Arc<DiskReads>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.reads.in_flight.lock().started.remove(&self.id);
    }
}

impl DiskReads {
    /// Runs `read` on the blocking pool as a read of `kind`. It waits at
    /// most `wait` for a slot (a `TimedOut` error if none came free: the
    /// disk is not answering the reads that hold them all), and is timed
    /// from when it begins on its thread, so that time spent waiting for a
    /// thread of the pool (busy with uploads, say) is not taken for the
    /// disk's.
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        kind: ReadKind,
        wait: Duration,
        read: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        let slot = self.slot(kind, wait).await.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "this copy's disk is not answering: {DISK_READS_PER_DIR} reads have waited on it for over {wait:?}; \
                     ask the master for another replica"
                ),
            )
        })?;
        let reads = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _running = reads.begin(slot);
            read()
        })
        .await
        .map_err(io::Error::other)
    }

    /// A slot of `kind`, waiting at most `wait`.
    async fn slot(&self, kind: ReadKind, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let slots = Arc::clone(&self.slots[kind as usize]);
        tokio::time::timeout(wait, slots.acquire_owned()).await.ok()?.ok()
    }

    /// A read holding `slot` begins now.
    fn begin(self: &Arc<Self>, slot: OwnedSemaphorePermit) -> Running {
        let mut in_flight = self.in_flight.lock();
        let id = in_flight.next;
        in_flight.next += 1;
        in_flight.started.insert(id, Instant::now());
        Running {
            _slot: slot,
            reads: Arc::clone(self),
            id,
        }
    }

    /// How long the oldest read running has been waiting on the disk.
    pub fn oldest(&self) -> Option<Duration> {
        // Ids grow with start times: the first entry began first.
        let in_flight = self.in_flight.lock();
        in_flight.started.values().next().map(Instant::elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn begun(reads: &Arc<DiskReads>) -> Running {
        let slot = reads.slot(ReadKind::Block, Duration::from_secs(1)).await.unwrap();
        reads.begin(slot)
    }

    #[tokio::test]
    async fn the_oldest_read_in_progress_is_reported_and_slots_run_out() {
        let reads = Arc::new(DiskReads::default());
        assert_eq!(reads.oldest(), None);
        let waiting = reads.slot(ReadKind::Block, Duration::from_secs(1)).await.unwrap();
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
        let more = reads.slot(ReadKind::Block, Duration::from_millis(10)).await;
        assert!(more.is_none(), "every slot is held");
        let refused = reads.run(ReadKind::Block, Duration::from_millis(10), || ()).await;
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::TimedOut);
        drop(first);
        // Now the oldest is a read begun at least 20 ms after the first.
        let oldest = reads.oldest().unwrap();
        assert!(
            oldest + Duration::from_millis(20) <= before_first.elapsed(),
            "the next oldest, begun after the first"
        );
        assert_eq!(
            reads
                .run(ReadKind::Block, Duration::from_millis(10), || 7)
                .await
                .unwrap(),
            7
        );
        let open = reads.slot(ReadKind::Open, Duration::from_millis(10)).await;
        assert!(open.is_some(), "opens have slots of their own");
        drop((open, rest));
        assert_eq!(reads.oldest(), None);
    }
}
