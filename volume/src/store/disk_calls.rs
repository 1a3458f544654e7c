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
//! that flushes everyone's data — so writes are stalled only when
//!
//! - a write call has waited past the stall timeout plus its own bytes'
//!   time at [`SLOWEST_DISK`] (committing a GiB is allowed two minutes
//!   more),
//! - no write that began before it is still within its own allowance (a
//!   small write queued behind a large fsync waits with it), and
//! - no write call that reaches the disk — a commit or a delete, not a
//!   write into the page cache — has finished for the stall timeout.
//!
//! A busy disk makes progress; a hung or frozen one makes none.
//!
//! While a call runs, its start and allowance are on record here:
//! `/-/status` reports a data dir that is stalled (`stalled_ms`, how long
//! the call that overstayed has waited), and the master then sends
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
/// may take; and when the last one that reached the disk finished.
#[derive(Debug, Default)]
struct InFlight {
    next: u64,
    started: BTreeMap<u64, (Instant, Duration)>,
    last_done: Option<Instant>,
}

impl InFlight {
    /// Whether a call that reached the disk finished within `stall`.
    fn progressed(&self, stall: Duration) -> bool {
        self.last_done.is_some_and(|done| done.elapsed() <= stall)
    }

    /// How long the oldest call past its allowance (`stall` and its own)
    /// has waited, if one is — unless `queued`, and a call that began
    /// before it is still within its own (it may be waiting behind that
    /// one).
    fn overstayed(&self, stall: Duration, queued: bool) -> Option<Duration> {
        // In the order they began: ids grow with start times.
        for (began, allowance) in self.started.values() {
            let waited = began.elapsed();
            if waited > stall + *allowance {
                return Some(waited);
            }
            if queued {
                return None;
            }
        }
        None
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
    /// Its end shows the disk answering (it did not only fill the page
    /// cache).
    reaches_disk: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut in_flight = self.calls.in_flight.lock();
        let calls = &mut in_flight[self.class as usize];
        calls.started.remove(&self.id);
        if self.reaches_disk {
            calls.last_done = Some(Instant::now());
        }
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
            let _running = calls.reading();
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

    /// A read of the disk (a block at most) begins now, on the calling
    /// thread; it is timed until the guard is dropped.
    pub fn reading(self: &Arc<Self>) -> Running {
        self.begin(Class::Read, Duration::ZERO, true)
    }

    /// A write that waits for the disk — a commit's fsync and rename, a
    /// delete — of about `bytes` begins now, on the calling thread; it is
    /// timed until the guard is dropped, and its end shows the disk
    /// answering.
    pub fn write(self: &Arc<Self>, bytes: u64) -> Running {
        let allowance = Duration::from_secs_f64(bytes as f64 / SLOWEST_DISK as f64);
        self.begin(Class::Write, allowance, true)
    }

    /// The same, of a write that usually only fills the page cache
    /// (creating a file, writing bytes to it): timed alike, but its end
    /// does not show that the disk answers.
    pub fn buffered_write(self: &Arc<Self>, bytes: u64) -> Running {
        let allowance = Duration::from_secs_f64(bytes as f64 / SLOWEST_DISK as f64);
        self.begin(Class::Write, allowance, false)
    }

    /// A call of `class` begins now, allowed `allowance` beyond the stall
    /// timeout.
    fn begin(self: &Arc<Self>, class: Class, allowance: Duration, reaches_disk: bool) -> Running {
        let mut in_flight = self.in_flight.lock();
        let calls = &mut in_flight[class as usize];
        let id = calls.next;
        calls.next += 1;
        calls.started.insert(id, (Instant::now(), allowance));
        Running {
            calls: Arc::clone(self),
            class,
            id,
            reaches_disk,
        }
    }

    /// Whether the disk is not answering: how long the oldest read past
    /// the stall timeout has waited, or if writes are stalled
    /// ([`DiskCalls::writes_stalled`]), the write's.
    pub fn stalled(&self, stall: Duration) -> Option<Duration> {
        let read = self.in_flight.lock()[Class::Read as usize].overstayed(stall, false);
        read.max(self.writes_stalled(stall))
    }

    /// Whether the disk is not taking writes (and a new one would only
    /// join the wait): how long the write that overstayed has waited (see
    /// the module's documentation for when that counts).
    pub fn writes_stalled(&self, stall: Duration) -> Option<Duration> {
        let in_flight = self.in_flight.lock();
        let writes = &in_flight[Class::Write as usize];
        writes
            .overstayed(stall, true)
            .filter(|_| !writes.progressed(stall))
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
    fn writes_stall_when_the_oldest_overstays_and_nothing_reaches_the_disk() {
        let calls = Arc::new(DiskCalls::default());
        let stall = Duration::from_millis(400);
        let past = || std::thread::sleep(stall + stall / 2);
        // A read past the stall timeout stalls the disk, not its writes.
        let read = calls.reading();
        past();
        assert!(
            calls.stalled(stall).unwrap() > stall,
            "a read past the stall timeout"
        );
        assert_eq!(calls.writes_stalled(stall), None, "a slow read stalls no write");
        drop(read);
        // A commit of an hour's bytes at the slowest disk's rate, and a
        // small write begun after it: queued behind it, not stalled.
        let huge = calls.write(SLOWEST_DISK * 3600);
        let small = calls.write(0);
        past();
        assert_eq!(
            calls.stalled(stall),
            None,
            "a write behind a large one, within its allowance"
        );
        // The large one ends: that is the disk answering.
        drop(huge);
        assert_eq!(calls.writes_stalled(stall), None, "a commit just finished");
        past();
        let waited = calls
            .writes_stalled(stall)
            .expect("the small write overstayed, nothing finished since");
        assert!(waited > stall);
        assert!(calls.stalled(stall).unwrap() >= waited);
        // Filling the page cache does not show the disk answering…
        drop(calls.buffered_write(1 << 20));
        assert!(
            calls.writes_stalled(stall).is_some(),
            "a buffered write is no progress"
        );
        // …a commit or a delete finishing does.
        drop(calls.write(0));
        assert_eq!(calls.writes_stalled(stall), None);
        drop(small);
        assert_eq!(oldest(&calls), None);
    }
}
