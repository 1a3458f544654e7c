//! The calls that wait on one disk, and how long the oldest of them has
//! been waiting: what tells a disk that stopped answering from one that
//! is only busy. A volume keeps a [`DiskCalls`] per data dir (reads and
//! writes); the master keeps one for its index (its writes, and the reads
//! of records not held in memory).
//!
//! **Reads.** A GET's read of a block that is not in memory runs on the
//! blocking pool (never on a thread serving HTTP), holding one of its data
//! dir's [`DISK_READS_PER_DIR`] slots, so that a hung disk holds at most
//! that many of the pool's threads; finding and opening a blob (its
//! metadata read, a short call: below) holds one of as many other slots,
//! so that reads stuck on bytes do not keep blobs whose bytes are cached
//! from being served.
//!
//! **Writes.** The disk calls of an upload (creating its temp file,
//! writing each batch of its bytes, committing it) and of a delete are
//! timed too, and so is each write of the master's index. They take no
//! slot — an upload holds its thread while its
//! bytes arrive, so slots would cap honest concurrency — but once a write
//! has waited too long, new ones to that dir are refused at once
//! ([`DiskCalls::writes_stalled`]) rather than each taking a thread to
//! the disk. A disk may hang on writes only (a frozen file system, a
//! stuck write cache) and still serve reads: the two are timed apart.
//!
//! **Short calls.** A hand-off to the blocking pool costs two thread
//! wake-ups and switches, more CPU than a call that only touches the
//! page cache: opening a blob to read it, and — without fsync — a small
//! write's whole commit, a delete, a mark or an abort, or a write of the
//! master's index (a memtable insert and a log append). Those run on the
//! thread serving their request instead ([`short_call`]), but only one
//! at a time in the process, and only with two or more such threads. A
//! disk that hangs under one of them (a frozen file system, a dead
//! device) then holds one serving thread at most: the others still
//! answer `/-/healthy` and `/-/status`, which report the stall, and
//! every further call goes to the blocking pool, as every write call
//! does with fsync (a call that waits for the disk is no short call; an
//! open still runs in place). A watch
//! thread makes sure an idle serving thread takes over polling the
//! sockets while a call is stuck ([`nudge_while_stuck`]).
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
//! While a call runs, its start and allowance are on record here: a
//! volume's `/-/status` reports a data dir that is stalled (`stalled_ms`,
//! how long the call that overstayed has waited), and the master then
//! sends writers and readers elsewhere until the disk answers again; a
//! master whose index is not taking writes refuses writes and deletes
//! (`503`) and goes on serving reads; one whose index's disk is not
//! answering reads refuses reads of records not held in memory (`503`);
//! either says so in its `/-/status` and `/-/ready`.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
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

/// One disk's calls (see the module's documentation).
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

impl Running {
    /// Ends the call without counting it as the disk answering: it failed
    /// or was refused (a write RocksDB would have made wait, say), which
    /// shows nothing of the disk.
    pub fn failed(mut self) {
        self.reaches_disk = false;
    }
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
        // An open reads a little metadata, mostly cached: a short call.
        short_call(kind == ReadKind::Open, move || {
            let _slot = slot;
            let _running = calls.reading();
            read()
        })
        .await
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
        self.reads_stalled(stall).max(self.writes_stalled(stall))
    }

    /// How long the oldest read past the stall timeout has waited, if one
    /// is: the disk is not answering reads.
    pub fn reads_stalled(&self, stall: Duration) -> Option<Duration> {
        self.in_flight.lock()[Class::Read as usize].overstayed(stall, false)
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

/// Whether a short call is running in place, on a thread that serves
/// HTTP ([`short_call`]): at most one does at a time.
static IN_PLACE: AtomicBool = AtomicBool::new(false);

/// When the call running in place began (milliseconds since [`CLOCK`]; 0
/// when none is), and its runtime, for [`nudge_while_stuck`].
static IN_PLACE_SINCE: AtomicU64 = AtomicU64::new(0);
static IN_PLACE_RUNTIME: Mutex<Option<tokio::runtime::Handle>> = Mutex::new(None);
static CLOCK: LazyLock<Instant> = LazyLock::new(Instant::now);

/// How long a call may run in place before the other serving threads are
/// woken (see [`nudge_while_stuck`]).
const NUDGE_AFTER: Duration = Duration::from_millis(50);

/// Runs `f`, a short call to the disk, and returns what it returned: on
/// the calling thread if `may_run_in_place`, this runtime has two or more
/// threads serving HTTP and no other call is running in place; else on
/// the blocking pool (see the module's documentation, "Short calls").
pub async fn short_call<T: Send + 'static>(
    may_run_in_place: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let f = if may_run_in_place {
        match in_place(f) {
            Ok(done) => return done,
            Err(f) => f,
        }
    } else {
        f
    };
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)
}

/// Runs `f` on the calling thread as [`short_call`] would — if this
/// runtime has two or more threads serving HTTP and no other call is
/// running in place — and returns what it returned; else gives `f` back,
/// for the caller to run where a call may wait.
pub fn in_place<T, F: FnOnce() -> T>(f: F) -> Result<io::Result<T>, F> {
    let runtime = tokio::runtime::Handle::try_current().ok();
    let free = runtime.as_ref().is_some_and(|h| h.metrics().num_workers() >= 2)
        && watching()
        && IN_PLACE
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
    if !free {
        return Err(f);
    }
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_PLACE_SINCE.store(0, Ordering::Release);
            IN_PLACE.store(false, Ordering::Release);
        }
    }
    let _leave = Leave;
    *IN_PLACE_RUNTIME.lock() = runtime;
    IN_PLACE_SINCE.store(CLOCK.elapsed().as_millis() as u64 + 1, Ordering::Release);
    // A panic is the call's error, as it is on the blocking pool: the
    // request gets a `500`, not a dropped connection.
    Ok(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| io::Error::other("a disk call panicked (see the log)")))
}

/// Whether the watch thread ([`nudge_while_stuck`]) runs: started on
/// first use. Without it no call runs in place.
fn watching() -> bool {
    static WATCHING: LazyLock<bool> = LazyLock::new(|| {
        std::thread::Builder::new()
            .name("short-call-watch".into())
            .spawn(nudge_while_stuck)
            .map_err(|e| tracing::warn!(error = %e, "no thread to watch short disk calls; they all go to the blocking pool"))
            .is_ok()
    });
    *WATCHING
}

/// Watches the call running in place: once it has run for longer than
/// [`NUDGE_AFTER`], wakes an idle serving thread of its runtime, and again
/// every [`NUDGE_AFTER`] while it runs.
///
/// A tokio worker polls the sockets when it goes idle and finds the
/// poller free (and briefly every 61 tasks while busy); one that goes
/// idle while another holds the poller sleeps until woken instead. If
/// the thread that held it then runs into a call that never returns,
/// nothing polls the sockets, and no request wakes the sleeping worker: the volume stops answering (seen with a frozen
/// file system under a small write, before this watch). A task spawned
/// from outside the runtime wakes an idle worker, which runs it, goes
/// idle again and takes the poller.
fn nudge_while_stuck() {
    loop {
        std::thread::sleep(NUDGE_AFTER);
        let since = IN_PLACE_SINCE.load(Ordering::Acquire);
        if since == 0 || CLOCK.elapsed().as_millis() as u64 + 1 < since + NUDGE_AFTER.as_millis() as u64 {
            continue;
        }
        if let Some(runtime) = IN_PLACE_RUNTIME.lock().as_ref() {
            drop(runtime.spawn(async {}));
        }
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

    /// One short call runs in place at a time; one that comes meanwhile
    /// goes to the blocking pool, and so does any call of a runtime with
    /// one serving thread, or one that may not run in place.
    #[test]
    fn one_short_call_at_a_time_runs_in_place() {
        use std::sync::mpsc;
        use std::thread;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            let (began_tx, began) = mpsc::channel();
            let (release, release_rx) = mpsc::channel::<()>();
            let held = tokio::spawn(async move {
                let caller = thread::current().id();
                let ran_on = short_call(true, move || {
                    began_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    thread::current().id()
                })
                .await
                .unwrap();
                (caller, ran_on)
            });
            tokio::task::spawn_blocking(move || began.recv().unwrap())
                .await
                .unwrap();
            // The first is running, in place: this one goes to the pool.
            let other = tokio::spawn(async {
                let caller = thread::current().id();
                (caller, short_call(true, || thread::current().id()).await.unwrap())
            });
            let (caller, ran_on) = other.await.unwrap();
            assert_ne!(caller, ran_on, "a second call ran in place beside the first");
            release.send(()).unwrap();
            let (caller, ran_on) = held.await.unwrap();
            assert_eq!(caller, ran_on, "the first call ran on the blocking pool");
            // The place is free again.
            let again = tokio::spawn(async {
                let caller = thread::current().id();
                (caller, short_call(true, || thread::current().id()).await.unwrap())
            });
            let (caller, ran_on) = again.await.unwrap();
            assert_eq!(caller, ran_on, "the place was not given back");
            let (caller, ran_on) = tokio::spawn(async {
                let caller = thread::current().id();
                (
                    caller,
                    short_call(false, || thread::current().id()).await.unwrap(),
                )
            })
            .await
            .unwrap();
            assert_ne!(caller, ran_on, "a call that may not run in place did");
        });
        let one_thread = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (caller, ran_on) = one_thread.block_on(async {
            (
                thread::current().id(),
                short_call(true, || thread::current().id()).await.unwrap(),
            )
        });
        assert_ne!(caller, ran_on, "a call ran in place on the only serving thread");
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
