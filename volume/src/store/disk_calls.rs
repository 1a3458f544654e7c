//! The calls of one data dir that wait on its disk, and how long the
//! oldest of them has been waiting: what tells a disk that stopped
//! answering from one that is only busy.
//!
//! **Reads.** A GET's read of a block that is not in memory runs on the
//! blocking pool (never on a thread serving HTTP), holding one of its data
//! dir's [`DISK_READS_PER_DIR`] slots, so that a hung disk holds at most
//! that many of the pool's threads; finding and opening a blob (its
//! metadata read) holds one of as many other slots, so that reads stuck
//! on bytes do not keep blobs whose bytes are cached from being served.
//!
//! **Writes.** The disk calls of an upload (creating its temp file,
//! writing each batch of its bytes, committing it) and of a delete are
//! timed too. They take no slot — an upload holds its thread while its
//! bytes arrive, so slots would cap honest concurrency — but once a write
//! has waited too long, new ones to that dir are refused at once
//! ([`DiskCalls::writes_stalled`]) rather than each taking a thread to
//! the disk. A disk may hang on writes only (a frozen file system, a
//! stuck write cache) and still serve reads: the two are timed apart.
//!
//! **Too long**, for a read, is the stall timeout: a read moves a block
//! at most, and needs nothing but its own bytes from the disk. A write
//! may wait on more than its own bytes — an `fsync` on the journal commit
//! that flushes everyone's data — so a write call alone past the stall
//! timeout (plus its own bytes' time at [`SLOWEST_DISK`]: committing a GiB
//! is allowed two minutes more) does not make the disk stalled; it is so
//! only when no write call to the dir has finished for the stall timeout
//! either. A busy disk makes progress; a hung or frozen one does not.
//!
//! While a call runs, its start and allowance are on record here:
//! `/-/status` reports a data dir with a call past its allowance
//! (`stalled_ms`, how long it has waited), and the master then sends
//! writers and readers elsewhere until the disk answers again.

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

/// The slowest a disk that still works is taken to move bytes: a call
/// that moves `n` bytes is allowed `n / SLOWEST_DISK` seconds beyond the
/// stall timeout before its disk is taken for hung.
pub const SLOWEST_DISK: u64 = 8 << 20;

/// What a read of the disk is for: each kind has slots of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// Finding and opening a blob: its metadata.
    Open,
    /// A block of a blob's bytes.
    Block,
}

/// Reads and writes, timed apart.
#[derive(Debug, Clone, Copy)]
enum Class {
    Read = 0,
    Write = 1,
}

/// One data dir's disk calls (see the module's documentation).
#[derive(Debug)]
pub struct DiskCalls {
    /// Slots for opens, and for block reads.
    slots: [Arc<Semaphore>; 2],
    /// The reads running, and the writes.
    in_flight: Mutex<[InFlight; 2]>,
}

/// The calls of one class running, by a number given in the order they
/// began: when each began, and how much longer than the stall timeout it
/// may take; and when the last of the class finished.
#[derive(Debug, Default)]
struct InFlight {
    next: u64,
    started: BTreeMap<u64, (Instant, Duration)>,
    last_done: Option<Instant>,
}

impl InFlight {
    /// Whether a call finished within `stall`: the disk makes progress.
    fn progressed(&self, stall: Duration) -> bool {
        self.last_done.is_some_and(|done| done.elapsed() <= stall)
    }

    /// How long the call waiting longest past its allowance (`stall` and
    /// its own) has waited, if any is.
    fn stalled(&self, stall: Duration) -> Option<Duration> {
        self.started
            .values()
            .map(|(began, allowance)| (began.elapsed(), *allowance))
            .filter(|(waited, allowance)| *waited > stall + *allowance)
            .map(|(waited, _)| waited)
            .max()
    }
}

impl Default for DiskCalls {
    fn default() -> Self {
        DiskCalls {
            slots: [(); 2].map(|()| Arc::new(Semaphore::new(DISK_READS_PER_DIR))),
            in_flight: Mutex::default(),
        }
    }
}

/// A call running: its start time, given back when dropped.
pub struct Running {
    calls: Arc<DiskCalls>,
    class: Class,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut in_flight = self.calls.in_flight.lock();
        let calls = &mut in_flight[self.class as usize];
        calls.started.remove(&self.id);
        calls.last_done = Some(Instant::now());
    }
}

impl DiskCalls {
    /// Runs `read` on the blocking pool as a read of `kind`. It waits at
    /// most `wait` for a slot (a `TimedOut` error if none came free: the
    /// disk is not answering the reads that hold them all), and is timed
    /// from when it begins on its thread, so that time spent waiting for a
    /// thread of the pool (busy with uploads, say) is not taken for the
    /// disk's.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        kind: ReadKind,
        wait: Duration,
        read: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        self.with_slot(kind, wait, |calls| {
            let _running = calls.reading();
            read()
        })
        .await
    }

    /// Runs `work` on the blocking pool holding a slot of `kind` (waiting
    /// at most `wait` for it, as [`DiskCalls::read`]), for work that reads
    /// many blocks and times each itself ([`DiskCalls::reading`]): a
    /// deep verify of a blob of any size.
    pub async fn with_slot<T: Send + 'static>(
        self: &Arc<Self>,
        kind: ReadKind,
        wait: Duration,
        work: impl FnOnce(&Arc<DiskCalls>) -> T + Send + 'static,
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
        let calls = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work(&calls)
        })
        .await
        .map_err(io::Error::other)
    }

    /// A slot of `kind`, waiting at most `wait`.
    async fn slot(&self, kind: ReadKind, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let slots = Arc::clone(&self.slots[kind as usize]);
        tokio::time::timeout(wait, slots.acquire_owned()).await.ok()?.ok()
    }

    /// A read of the disk (a block at most) begins now, on the calling
    /// thread; it is timed until the guard is dropped.
    pub fn reading(self: &Arc<Self>) -> Running {
        self.begin(Class::Read, Duration::ZERO)
    }

    /// A write to the disk of about `bytes` begins now, on the calling
    /// thread; it is timed until the guard is dropped.
    pub fn write(self: &Arc<Self>, bytes: u64) -> Running {
        let allowance = Duration::from_secs_f64(bytes as f64 / SLOWEST_DISK as f64);
        self.begin(Class::Write, allowance)
    }

    /// A call of `class` begins now, allowed `allowance` beyond the stall
    /// timeout.
    fn begin(self: &Arc<Self>, class: Class, allowance: Duration) -> Running {
        let mut in_flight = self.in_flight.lock();
        let calls = &mut in_flight[class as usize];
        let id = calls.next;
        calls.next += 1;
        calls.started.insert(id, (Instant::now(), allowance));
        Running {
            calls: Arc::clone(self),
            class,
            id,
        }
    }

    /// Whether the disk is not answering: how long the read waiting
    /// longest past the stall timeout has waited, or if writes are
    /// stalled ([`DiskCalls::writes_stalled`]), the write's.
    pub fn stalled(&self, stall: Duration) -> Option<Duration> {
        self.stalled_read(stall).max(self.writes_stalled(stall))
    }

    /// Whether the disk is not taking writes (and a new one would only
    /// join the wait): how long the write waiting longest past its
    /// allowance has waited, when no write call has finished for the
    /// stall timeout.
    pub fn writes_stalled(&self, stall: Duration) -> Option<Duration> {
        let in_flight = self.in_flight.lock();
        let writes = &in_flight[Class::Write as usize];
        writes.stalled(stall).filter(|_| !writes.progressed(stall))
    }

    fn stalled_read(&self, stall: Duration) -> Option<Duration> {
        self.in_flight.lock()[Class::Read as usize].stalled(stall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long the oldest call has waited (reads have no allowance).
    fn oldest(calls: &DiskCalls) -> Option<Duration> {
        calls.stalled(Duration::ZERO)
    }

    async fn begun(reads: &Arc<DiskCalls>) -> (OwnedSemaphorePermit, Running) {
        let slot = reads.slot(ReadKind::Block, Duration::from_secs(1)).await.unwrap();
        (slot, reads.reading())
    }

    #[tokio::test]
    async fn the_oldest_read_in_progress_is_reported_and_slots_run_out() {
        let reads = Arc::new(DiskCalls::default());
        assert_eq!(oldest(&reads), None);
        let waiting = reads.slot(ReadKind::Block, Duration::from_secs(1)).await.unwrap();
        assert_eq!(oldest(&reads), None, "a slot held, no read begun");
        drop(waiting);
        let before_first = Instant::now();
        let first = begun(&reads).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut rest = Vec::new();
        for _ in 1..DISK_READS_PER_DIR {
            rest.push(begun(&reads).await);
        }
        assert!(
            oldest(&reads).unwrap() >= Duration::from_millis(20),
            "the first read's age"
        );
        let more = reads.slot(ReadKind::Block, Duration::from_millis(10)).await;
        assert!(more.is_none(), "every slot is held");
        let refused = reads
            .read(ReadKind::Block, Duration::from_millis(10), || ())
            .await;
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::TimedOut);
        drop(first);
        // Now the oldest is a read begun at least 20 ms after the first.
        let next = oldest(&reads).unwrap();
        assert!(
            next + Duration::from_millis(20) <= before_first.elapsed(),
            "the next oldest, begun after the first"
        );
        assert_eq!(
            reads
                .read(ReadKind::Block, Duration::from_millis(10), || 7)
                .await
                .unwrap(),
            7
        );
        let open = reads.slot(ReadKind::Open, Duration::from_millis(10)).await;
        assert!(open.is_some(), "opens have slots of their own");
        drop((open, rest));
        assert_eq!(oldest(&reads), None);
    }

    #[test]
    fn writes_are_timed_apart_from_reads_and_stall_only_without_progress() {
        let calls = Arc::new(DiskCalls::default());
        let stall = Duration::from_millis(400);
        let read = calls.reading();
        // A commit of an hour's bytes at the slowest disk's rate.
        let huge = calls.write(SLOWEST_DISK * 3600);
        std::thread::sleep(stall + stall / 2);
        let waited = calls.stalled(stall).expect("a read past the stall timeout");
        assert!(waited > stall);
        assert_eq!(
            calls.writes_stalled(stall),
            None,
            "a slow read stalls no write, nor a large write"
        );
        drop(read);
        let write = calls.write(0);
        let other = calls.write(0);
        std::thread::sleep(stall + stall / 2);
        let waited = calls
            .writes_stalled(stall)
            .expect("writes past the stall timeout, none finished");
        assert!(waited > stall);
        assert!(
            calls.stalled(stall).unwrap() >= waited,
            "the write is now the call stalled"
        );
        drop(other);
        assert_eq!(
            calls.writes_stalled(stall),
            None,
            "a write just finished: the disk makes progress"
        );
        drop(write);
        assert_eq!(
            calls.stalled(stall),
            None,
            "only the large write, within its allowance"
        );
        drop(huge);
        assert_eq!(oldest(&calls), None);
    }
}
