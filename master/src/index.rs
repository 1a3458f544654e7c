//! The key index: RocksDB, key bytes → [`Record`] in the compact binary
//! form of [`codec`] (volumes as small ids from the `volumes` column
//! family, raw digests, varints; 73 bytes for a live 3-replica record).
//! Indexes written as JSON by earlier versions are rewritten on open.
//!
//! The number of keys in each state is kept in the `stats` column family,
//! updated in the same batch as the records (a merge that adds), so
//! opening the index reads three counters instead of every record. A key
//! counts as what it reads as ([`Record::counted_state`]): a live key
//! being replaced stays counted as live, and only a write over nothing
//! counts as *writing*.
//!
//! Keys written with a TTL also have an entry in the `expiry` column family,
//! `expires (u64 big-endian ms) ‖ key` → empty: ordered by time, so the
//! expirer reads only the entries that are due and never a live key. An
//! entry is written in the same batch as its record; one whose record has
//! since changed (deleted, rewritten) is stale, and is dropped when the
//! expirer finds it.
//!
//! RocksDB's default comparator is bytewise, which is exactly the order
//! listings promise ([`listing`]: pages, delimiters, one seek per common
//! prefix). Writes are synced to the WAL unless `--no-fsync`, so a
//! `201` survives a crash of the master. Point reads (`get`) run inline
//! when the record is in memory (memtable, block cache); one that must
//! read an SST file is timed and first moves the serving thread's other
//! work elsewhere, so that a device that hangs reads cannot stop the
//! master ([`Index::get`]). Unsynced writes are short calls, one at a
//! time on a serving thread unless RocksDB would make them wait
//! ([`Index::write`]); synced writes, listings and scans run on tokio's
//! blocking pool. Every write is timed, and refused at once while the
//! disk is not taking writes; a read of the disk likewise while reads
//! are not answered ([`Index::stalled`]).

use parking_lot::RwLock;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, MergeOperands, Options,
    ReadOptions, ReadTier, WriteBatch, WriteOptions, DB, DEFAULT_COLUMN_FAMILY_NAME,
};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use trove_common::disk_calls::{in_place, short_call, DiskCalls};
use trove_common::key::Key;
use trove_common::record::{Record, RecordError, State};

pub mod codec;
mod listing;
use codec::VolumeTable;
pub use listing::{visible, Bound, Listing, Page};

/// Index failures (the master answers `500` to these, `503` to
/// [`IndexError::Stalled`]).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// RocksDB's own message says it all; it is not also given as the
    /// error's source, which would print it twice in a report of the chain.
    #[error("index (RocksDB) error: {0}")]
    Db(rocksdb::Error),
    /// Opening an index another process has open (callers name the path).
    #[error("another process has it open (a running trove-master, or a rebuild into it): stop that one first, or give this one another --db")]
    Locked,
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("index task failed: {0}")]
    Task(String),
    /// A write has waited on the index's disk past the stall timeout
    /// ([`Index::write`]): new ones are refused rather than queued.
    #[error("the index is not taking writes: one has waited {:.1} s on its disk (a frozen file system, a hung device?); reads are still served, and writes resume once the disk answers", .0.as_secs_f64())]
    Stalled(Duration),
    /// A read of a record not held in memory has waited on the index's
    /// disk past the stall timeout ([`Index::get`]): further ones are
    /// refused rather than queued.
    #[error("the index's disk is not answering reads: one has waited {:.1} s on it (a hung device?); keys whose records are held in memory are still served, the others once the disk answers", .0.as_secs_f64())]
    ReadStalled(Duration),
    /// [`DISK_READS`] reads are waiting on the index's disk already.
    #[error("the index's disk is slow: {DISK_READS} reads of it are waiting already; try again")]
    ReadsQueued,
    /// [`LISTINGS`] listings' pages are being read already.
    #[error("{LISTINGS} listings are being read from the index already; try again")]
    ListingsQueued,
}

/// Reads of records not held in memory that may wait on the index's disk
/// at once ([`Index::get`]): a hung disk holds at most this many threads.
pub const DISK_READS: usize = 64;

/// Listings' pages read at once ([`Index::list`]): a hung disk holds at
/// most this many of the blocking pool's threads with them.
pub const LISTINGS: usize = 16;

impl IndexError {
    /// Whether the index refused for now, its disk stalled or busy: the
    /// same call can succeed later, unlike a RocksDB error or a bad record.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IndexError::Stalled(_)
                | IndexError::ReadStalled(_)
                | IndexError::ReadsQueued
                | IndexError::ListingsQueued
        )
    }
}

impl From<rocksdb::Error> for IndexError {
    fn from(e: rocksdb::Error) -> IndexError {
        IndexError::Db(e)
    }
}

/// How many keys are in each state, each key counted as what it reads as
/// ([`Record::counted_state`]).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KeyCounts {
    /// Live keys, a key being replaced included.
    pub live: i64,
    /// Keys being written that had no value before (a new key's first
    /// write, or one whose master stopped mid-write).
    pub writing: i64,
    /// Unlinked keys, one being written again included.
    pub unlinked: i64,
}

/// The column family of the expiry index.
const EXPIRY_CF: &str = "expiry";
/// The column family of the volume table: id (u32 big-endian) → address.
const VOLUMES_CF: &str = "volumes";
/// The column family of the key counters (i64 little-endian, added to by
/// merges) and the format marker.
const STATS_CF: &str = "stats";
/// The stats entry saying every record is in the binary format.
const FORMAT_ENTRY: &[u8] = b"format";
/// The stats entry saying the counters count each key as what it reads
/// as ([`Record::counted_state`]); an index without it (counted by record
/// state, a replace as *writing*) is counted again once on open.
const COUNTS_ENTRY: &[u8] = b"counts";
/// The prefix of the stats entries that remember each volume's data dirs
/// (`disks/<address>` → what `volumes::Disks` encodes), so that a volume
/// emptied while the master was down, or before it restarted, is still
/// known to lack the older keys.
const DISKS_PREFIX: &[u8] = b"disks/";
/// In the stats column family: how the index began (see [`Origin`]).
const ORIGIN_ENTRY: &[u8] = b"origin";

/// How an index began, kept in it from then on: a master that created it
/// empty, or a `rebuild` from the volumes. An index from before this was
/// kept has neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `serve` found it empty (no key, no volume ever seen), at Unix ms.
    BornEmpty(u64),
    /// Written by `rebuild`, at Unix ms.
    Rebuilt(u64),
}
/// Records rewritten per batch when an index of JSON records is migrated.
const MIGRATE_BATCH: usize = 10_000;

/// The stats entry counting keys in `state`.
fn counter_entry(state: State) -> &'static [u8] {
    match state {
        State::Live => b"live",
        State::Writing => b"writing",
        State::Unlinked => b"unlinked",
    }
}

fn counter_value(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_le_bytes).unwrap_or(0)
}

/// The merge operator of the counters: the sum of the operands.
fn add_counts(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let sum = operands
        .into_iter()
        .fold(existing.map_or(0, counter_value), |acc, op| {
            acc.wrapping_add(counter_value(op))
        });
    Some(sum.to_le_bytes().to_vec())
}

/// The block cache when no size is given (`--index-cache`).
pub const DEFAULT_CACHE: usize = 8 << 20;

/// The expiry-index entry of `key` expiring at `expires` (Unix ms).
fn expiry_entry(expires: u64, key: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(8 + key.len());
    entry.extend_from_slice(&expires.to_be_bytes());
    entry.extend_from_slice(key);
    entry
}

/// Keys due to expire, and how many expiry-index entries were read to
/// find them.
#[derive(Debug, Default, PartialEq)]
pub struct Due {
    /// `(expires, key)`, soonest first.
    pub entries: Vec<(u64, String)>,
    /// Entries read (the due ones, plus at most one that is not due yet).
    pub scanned: usize,
}

/// The RocksDB index. Cheap to clone.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    sync: bool,
    /// The volume table, loaded at open; ids are added, never changed.
    volumes: RwLock<VolumeTable>,
    /// Held while new volume ids are stored ([`Index::register_volumes`]).
    registering: parking_lot::Mutex<()>,
    live: AtomicI64,
    writing: AtomicI64,
    unlinked: AtomicI64,
    /// Iterator moves made by listings (a metric, and the tests' check
    /// that a common prefix costs one seek).
    list_reads: AtomicU64,
    /// Unsynced writes that met a write stall and went to the blocking
    /// pool ([`Index::write`]; a metric).
    write_stalls: AtomicU64,
    /// The reads and writes of the disk running, timed ([`Index::stalled`]).
    calls: Arc<DiskCalls>,
    /// Reads that may wait on the disk ([`DISK_READS`]).
    disk_reads: tokio::sync::Semaphore,
    /// Listings' pages being read ([`LISTINGS`]).
    listings: Arc<tokio::sync::Semaphore>,
    /// Reads that take only what is in memory (memtables, block cache).
    from_memory: ReadOptions,
    /// How long a write, or a read of the disk, may wait before new ones
    /// are refused (a serving master's `--stall-timeout`; `None`: never).
    stall: Option<Duration>,
}

impl Index {
    /// Opens (creating if missing) the index at `path`, with a block cache
    /// of `cache_bytes`. An index of JSON records (earlier versions) is
    /// rewritten in the binary format first, and its keys counted once.
    /// Once a write has waited on the disk past `stall`, new writes fail
    /// at once with [`IndexError::Stalled`] until one finishes.
    pub fn open(
        path: &Path,
        sync: bool,
        cache_bytes: usize,
        stall: Option<Duration>,
    ) -> Result<Index, IndexError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Records are ~73 bytes: small buffers keep the master's memory low.
        opts.set_write_buffer_size(8 << 20);
        opts.set_max_write_buffer_number(2);
        opts.set_keep_log_file_num(4);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(cache_bytes));
        // A lookup of a key that does not exist (every new write) reads no
        // block from disk: ~10 bits a key, 1% false positives.
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        opts.set_block_based_table_factory(&table);
        opts.create_missing_column_families(true);
        let mut expiry_opts = Options::default();
        expiry_opts.set_write_buffer_size(4 << 20);
        let mut small_opts = Options::default();
        small_opts.set_write_buffer_size(1 << 20);
        let mut stats_opts = small_opts.clone();
        stats_opts.set_merge_operator_associative("add-i64", add_counts);
        let db = DB::open_cf_descriptors(
            &opts,
            path,
            [
                ColumnFamilyDescriptor::new(DEFAULT_COLUMN_FAMILY_NAME, opts.clone()),
                ColumnFamilyDescriptor::new(EXPIRY_CF, expiry_opts),
                ColumnFamilyDescriptor::new(VOLUMES_CF, small_opts),
                ColumnFamilyDescriptor::new(STATS_CF, stats_opts),
            ],
        )
        .map_err(|e| {
            // RocksDB names the lock file when it cannot take it: "While
            // lock file: <db>/LOCK: Resource temporarily unavailable" (another
            // process), "lock hold by current process … <db>/LOCK: No locks
            // available" (this one).
            if e.kind() == rocksdb::ErrorKind::IOError && e.as_ref().contains("/LOCK:") {
                IndexError::Locked
            } else {
                IndexError::Db(e)
            }
        })?;
        let index = Index {
            inner: Arc::new(Inner {
                db,
                sync,
                volumes: RwLock::new(VolumeTable::default()),
                registering: parking_lot::Mutex::new(()),
                live: AtomicI64::new(0),
                writing: AtomicI64::new(0),
                unlinked: AtomicI64::new(0),
                list_reads: AtomicU64::new(0),
                write_stalls: AtomicU64::new(0),
                calls: Arc::default(),
                disk_reads: tokio::sync::Semaphore::new(DISK_READS),
                listings: Arc::new(tokio::sync::Semaphore::new(LISTINGS)),
                from_memory: {
                    let mut opts = ReadOptions::default();
                    opts.set_read_tier(ReadTier::BlockCache);
                    opts
                },
                stall,
            }),
        };
        index.load_volumes()?;
        let stats = index.cf(STATS_CF);
        if index.inner.db.get_cf(stats, FORMAT_ENTRY)?.is_none()
            || index.inner.db.get_cf(stats, COUNTS_ENTRY)?.is_none()
        {
            index.migrate()?;
        }
        for state in [State::Live, State::Writing, State::Unlinked] {
            let n = index
                .inner
                .db
                .get_cf(index.cf(STATS_CF), counter_entry(state))?
                .map_or(0, |v| counter_value(&v));
            index.counter(state).store(n, Ordering::Relaxed);
        }
        Ok(index)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.inner
            .db
            .cf_handle(name)
            .expect("opened with every column family")
    }

    fn load_volumes(&self) -> Result<(), IndexError> {
        let stored = self.stored_volumes()?;
        *self.inner.volumes.write() = stored;
        Ok(())
    }

    /// The volume table as stored in the index.
    fn stored_volumes(&self) -> Result<VolumeTable, IndexError> {
        let mut entries = vec![];
        for item in self
            .inner
            .db
            .iterator_cf(self.cf(VOLUMES_CF), IteratorMode::Start)
        {
            let (id, name) = item?;
            let id = <[u8; 4]>::try_from(&*id)
                .map(u32::from_be_bytes)
                .map_err(|_| RecordError::Corrupt("damaged volume table entry".into()))?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| RecordError::Corrupt("volume address is not UTF-8".into()))?;
            entries.push((id, name));
        }
        Ok(VolumeTable::from_entries(entries)?)
    }

    /// Gives every volume `record` names an id, storing new ones before
    /// any record uses them. New ids are stored with no lock held that
    /// readers take: a store that waits on the disk (a frozen file
    /// system) must leave every read of a record answering. Registrations
    /// take turns, so that two never give out the same id.
    fn register_volumes(&self, record: &Record) -> Result<(), IndexError> {
        let known = |table: &VolumeTable| codec::volumes_of(record).all(|v| table.id(v).is_some());
        if known(&self.inner.volumes.read()) {
            return Ok(());
        }
        let _turn = self.inner.registering.lock();
        let mut table = self.inner.volumes.read().clone();
        let added = table.assign(codec::volumes_of(record));
        if added.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (id, name) in &added {
            batch.put_cf(self.cf(VOLUMES_CF), id.to_be_bytes(), name.as_bytes());
        }
        // Only once stored are the ids given out: a record never names an
        // id the index does not hold.
        self.inner.db.write_opt(batch, &self.write_opts())?;
        *self.inner.volumes.write() = table;
        Ok(())
    }

    /// The bytes stored for `record`.
    fn encode(&self, record: &Record) -> Result<Vec<u8>, IndexError> {
        self.register_volumes(record)?;
        let table = self.inner.volumes.read();
        Ok(codec::encode(record, &table))
    }

    /// A stored record.
    fn decode(&self, bytes: &[u8]) -> Result<Record, IndexError> {
        let table = self.inner.volumes.read();
        Ok(codec::decode(bytes, &table)?)
    }

    /// Rewrites the records of an earlier version (JSON) in the binary
    /// format and counts the keys: once, the first time this version
    /// opens the index (an index already binary is only counted).
    fn migrate(&self) -> Result<(), IndexError> {
        let mut counts = [(State::Live, 0i64), (State::Writing, 0), (State::Unlinked, 0)];
        let mut batch = WriteBatch::default();
        let mut rewritten = 0u64;
        for item in self.inner.db.iterator(IteratorMode::Start) {
            let (key, value) = item?;
            let record = self.decode(&value)?;
            counts
                .iter_mut()
                .find(|(s, _)| *s == record.counted_state())
                .expect("every state")
                .1 += 1;
            if codec::is_json(&value) {
                batch.put(&key, self.encode(&record)?);
                rewritten += 1;
            }
            if batch.len() >= MIGRATE_BATCH {
                self.inner
                    .db
                    .write_opt(std::mem::take(&mut batch), &self.write_opts())?;
            }
        }
        for (state, n) in counts {
            batch.put_cf(self.cf(STATS_CF), counter_entry(state), n.to_le_bytes());
        }
        batch.put_cf(self.cf(STATS_CF), FORMAT_ENTRY, [codec::VERSION]);
        batch.put_cf(self.cf(STATS_CF), COUNTS_ENTRY, b"settled");
        self.inner.db.write_opt(batch, &WriteOptions::default())?;
        self.inner.db.flush_wal(true)?;
        if rewritten > 0 {
            tracing::info!(
                records = rewritten,
                "index records rewritten in the binary format"
            );
        }
        Ok(())
    }

    fn counter(&self, state: State) -> &AtomicI64 {
        match state {
            State::Live => &self.inner.live,
            State::Writing => &self.inner.writing,
            State::Unlinked => &self.inner.unlinked,
        }
    }

    /// Writes `batch` with the counter changes `deltas` (state, ±n) in it,
    /// then applies them to the in-memory counts.
    fn commit(&self, batch: WriteBatch, deltas: &[(Option<State>, i64)]) -> Result<(), IndexError> {
        self.commit_with(batch, deltas, &self.write_opts())
    }

    /// [`Index::commit`] with the write options `opts`.
    fn commit_with(
        &self,
        mut batch: WriteBatch,
        deltas: &[(Option<State>, i64)],
        opts: &WriteOptions,
    ) -> Result<(), IndexError> {
        for &(state, delta) in deltas {
            if let Some(state) = state {
                batch.merge_cf(self.cf(STATS_CF), counter_entry(state), delta.to_le_bytes());
            }
        }
        self.inner.db.write_opt(batch, opts)?;
        for &(state, delta) in deltas {
            if let Some(state) = state {
                self.counter(state).fetch_add(delta, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// What is remembered of each volume's data dirs: (address, bytes).
    /// Blocking (a few small reads, at start-up).
    pub fn volume_disks(&self) -> Result<Vec<(String, Vec<u8>)>, IndexError> {
        let mut found = vec![];
        let from = IteratorMode::From(DISKS_PREFIX, rocksdb::Direction::Forward);
        for item in self.inner.db.iterator_cf(self.cf(STATS_CF), from) {
            let (entry, value) = item?;
            let Some(addr) = entry.strip_prefix(DISKS_PREFIX) else {
                break;
            };
            found.push((String::from_utf8_lossy(addr).into_owned(), value.to_vec()));
        }
        Ok(found)
    }

    /// How the index began, if it says. Blocking (one read).
    pub fn origin(&self) -> Result<Option<Origin>, IndexError> {
        let stored = self.inner.db.get_cf(self.cf(STATS_CF), ORIGIN_ENTRY)?;
        Ok(stored.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Records how the index began (synced). Blocking.
    pub fn set_origin(&self, origin: Origin) -> Result<(), IndexError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        let bytes = serde_json::to_vec(&origin).expect("plain data");
        self.inner
            .db
            .put_cf_opt(self.cf(STATS_CF), ORIGIN_ENTRY, bytes, &opts)?;
        Ok(())
    }

    /// Remembers `disks` for the volume at `addr` (synced, whatever
    /// `--no-fsync` says: it changes only when a disk does).
    pub async fn put_volume_disks(&self, addr: &str, disks: Vec<u8>) -> Result<(), IndexError> {
        let entry = [DISKS_PREFIX, addr.as_bytes()].concat();
        self.check_writable()?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.timed(|| {
                let mut opts = WriteOptions::default();
                opts.set_sync(true);
                Ok(this.inner.db.put_cf_opt(this.cf(STATS_CF), entry, disks, &opts)?)
            })
        })
        .await
        .map_err(|e| IndexError::Task(e.to_string()))?
    }

    /// Unsynced writes that met a RocksDB write stall and so waited on
    /// the blocking pool.
    pub fn write_stalls(&self) -> u64 {
        self.inner.write_stalls.load(Ordering::Relaxed)
    }

    /// Keys per state.
    pub fn counts(&self) -> KeyCounts {
        KeyCounts {
            live: self.inner.live.load(Ordering::Relaxed),
            writing: self.inner.writing.load(Ordering::Relaxed),
            unlinked: self.inner.unlinked.load(Ordering::Relaxed),
        }
    }

    /// The index's size on disk, in bytes: every column family's tables,
    /// and the write-ahead log, where the latest writes are until RocksDB
    /// flushes them into a table (so a young index is not "0 B").
    pub fn disk_size(&self) -> u64 {
        let db = &self.inner.db;
        let tables: u64 = db
            .live_files()
            .map(|files| files.iter().map(|f| f.size as u64).sum())
            .unwrap_or(0);
        let logs: u64 = std::fs::read_dir(db.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        tables + logs
    }

    /// Flushes the memtables and compacts every column family: what a
    /// long-running index settles to (the scale benchmark measures bytes
    /// per key after it). Blocking.
    pub fn compact(&self) -> Result<(), IndexError> {
        self.inner.db.flush()?;
        for name in [DEFAULT_COLUMN_FAMILY_NAME, EXPIRY_CF, VOLUMES_CF, STATS_CF] {
            self.inner
                .db
                .compact_range_cf(self.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// The record of `key`, if any. From memory (memtables, block cache)
    /// on the calling thread, which is how nearly every read is answered;
    /// one that must go to the disk is timed, and moves off the threads
    /// serving HTTP first ([`Index::get_from_disk`]).
    pub fn get(&self, key: &Key) -> Result<Option<Record>, IndexError> {
        match self
            .inner
            .db
            .get_pinned_opt(key.as_bytes(), &self.inner.from_memory)
        {
            Ok(Some(v)) => Ok(Some(self.decode(&v)?)),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => self.get_from_disk(key),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Index::get`] of a record that is not in memory. A device that
    /// hangs reads would hold the thread forever, so it runs as a short
    /// call (one at a time on a serving thread, watched: see
    /// [`in_place`]), and any other meanwhile first hands its serving
    /// thread's other work to a new one (`block_in_place`): the master
    /// goes on answering, `/-/healthy` and `/-/status` included. At most
    /// [`DISK_READS`] wait at once, and while one has waited past the
    /// stall timeout, new ones are refused at once
    /// ([`IndexError::ReadStalled`]).
    fn get_from_disk(&self, key: &Key) -> Result<Option<Record>, IndexError> {
        self.check_readable()?;
        let _slot = self
            .inner
            .disk_reads
            .try_acquire()
            .map_err(|_| IndexError::ReadsQueued)?;
        let read = || {
            let _running = self.inner.calls.reading();
            match self.inner.db.get_pinned(key.as_bytes())? {
                Some(v) => Ok(Some(self.decode(&v)?)),
                None => Ok(None),
            }
        };
        // One at a time in place, as a short call (the page cache answers
        // most); any other while that one runs moves off its thread.
        match in_place(read) {
            Ok(done) => done.map_err(|e| IndexError::Task(e.to_string()))?,
            Err(read) => off_serving_threads(read),
        }
    }

    fn expiry_cf(&self) -> &rocksdb::ColumnFamily {
        self.cf(EXPIRY_CF)
    }

    /// Adds `record` (and its expiry entry, for a live key with a TTL).
    fn add(&self, batch: &mut WriteBatch, key: &Key, record: &Record) -> Result<(), IndexError> {
        batch.put(key.as_bytes(), self.encode(record)?);
        if let (State::Live, Some(t)) = (record.state, record.expires) {
            batch.put_cf(self.expiry_cf(), expiry_entry(t, key.as_bytes()), b"");
        }
        Ok(())
    }

    /// Up to `limit` expiry entries due at `now` (Unix ms), soonest first.
    /// Reads the expiry index only, and stops at the first entry not due.
    pub async fn due(&self, now: u64, limit: usize) -> Result<Due, IndexError> {
        self.due_after(now, limit, None).await
    }

    /// [`Index::due`], from the entry after `after` (`(expires, key)`, an
    /// entry an earlier call returned): so that entries that cannot be
    /// handled now do not hide the ones behind them.
    pub async fn due_after(
        &self,
        now: u64,
        limit: usize,
        after: Option<(u64, String)>,
    ) -> Result<Due, IndexError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.due_blocking(now, limit, after))
            .await
            .map_err(|e| IndexError::Task(e.to_string()))?
    }

    fn due_blocking(&self, now: u64, limit: usize, after: Option<(u64, String)>) -> Result<Due, IndexError> {
        let mut due = Due::default();
        let after = after.map(|(time, key)| expiry_entry(time, key.as_bytes()));
        let mode = match &after {
            Some(entry) => IteratorMode::From(entry, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        for item in self.inner.db.iterator_cf(self.expiry_cf(), mode) {
            let (entry, _) = item?;
            if after.as_deref() == Some(&*entry) {
                continue;
            }
            due.scanned += 1;
            let Some((time, key)) = entry.split_first_chunk::<8>() else {
                continue;
            };
            let time = u64::from_be_bytes(*time);
            if time > now || due.entries.len() == limit {
                break;
            }
            due.entries
                .push((time, String::from_utf8_lossy(key).into_owned()));
        }
        Ok(due)
    }

    /// Removes an expired key's record and its expiry entry, together.
    pub async fn remove_expired(&self, key: &Key, expires: u64, previous: State) -> Result<(), IndexError> {
        let k = key.clone();
        let batch = move |this: &Index| {
            let mut batch = WriteBatch::default();
            batch.delete(k.as_bytes());
            batch.delete_cf(this.expiry_cf(), expiry_entry(expires, k.as_bytes()));
            Ok(batch)
        };
        self.write(batch, vec![(Some(previous), -1)]).await
    }

    /// Drops a stale expiry entry (its key was deleted or rewritten).
    pub async fn forget_expiry(&self, key: &str, expires: u64) -> Result<(), IndexError> {
        let entry = expiry_entry(expires, key.as_bytes());
        let batch = move |this: &Index| {
            let mut batch = WriteBatch::default();
            batch.delete_cf(this.expiry_cf(), &entry);
            Ok(batch)
        };
        self.write(batch, vec![]).await
    }

    fn write_opts(&self) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(self.inner.sync);
        w
    }

    /// Stores `record` for `key`. `previous` is the state the key counted
    /// as ([`Record::counted_state`]) in the record the caller saw under
    /// the key's lock (for the counts).
    pub async fn put(&self, key: &Key, record: Record, previous: Option<State>) -> Result<(), IndexError> {
        let k = key.clone();
        let deltas = vec![(previous, -1), (Some(record.counted_state()), 1)];
        let batch = move |this: &Index| {
            let mut batch = WriteBatch::default();
            this.add(&mut batch, &k, &record)?;
            Ok(batch)
        };
        self.write(batch, deltas).await
    }

    /// Removes `key`'s record, which counted as `previous`.
    pub async fn remove(&self, key: &Key, previous: Option<State>) -> Result<(), IndexError> {
        let k = key.clone();
        let batch = move |_: &Index| {
            let mut batch = WriteBatch::default();
            batch.delete(k.as_bytes());
            Ok(batch)
        };
        self.write(batch, vec![(previous, -1)]).await
    }

    /// Commits the batch `make` builds, with the counts' `deltas`. When
    /// writes are not synced (`--no-fsync`) it is a short call
    /// ([`short_call`]: usually on the calling thread): a memtable insert
    /// and an append to the log in the page cache cost less than a
    /// hand-off to another thread (reads are inline too). Otherwise — or
    /// when RocksDB would make it wait, in a write stall while compaction
    /// catches up — it goes to the blocking pool: a synced write takes
    /// milliseconds, and concurrent writers share a log sync only if each
    /// waits on a thread of its own. Either way it is timed, and refused
    /// at once while the disk is stalled ([`Index::stalled`]).
    async fn write(
        &self,
        make: impl Fn(&Index) -> Result<WriteBatch, IndexError> + Send + Sync + 'static,
        deltas: Vec<(Option<State>, i64)>,
    ) -> Result<(), IndexError> {
        self.check_writable()?;
        let make = Arc::new(make);
        if !self.inner.sync {
            let (this, make, deltas) = (self.clone(), Arc::clone(&make), deltas.clone());
            let tried = short_call(true, move || {
                this.timed(|| {
                    let mut opts = this.write_opts();
                    opts.set_no_slowdown(true);
                    this.commit_with(make(&this)?, &deltas, &opts)
                })
            })
            .await
            .map_err(|e| IndexError::Task(e.to_string()))?;
            match tried {
                Err(IndexError::Db(e)) if e.kind() == rocksdb::ErrorKind::Incomplete => {
                    self.inner.write_stalls.fetch_add(1, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.timed(|| this.commit(make(&this)?, &deltas)))
            .await
            .map_err(|e| IndexError::Task(e.to_string()))?
    }

    /// Whether the index's disk is not answering: how long the oldest
    /// call has waited on it — a read past the stall timeout, or a write
    /// past it with no write finished meanwhile (a frozen or hung file
    /// system, where a busy one still finishes writes).
    pub fn stalled(&self) -> Option<Duration> {
        self.inner.calls.stalled(self.inner.stall?)
    }

    /// Why the index's disk is taken for stalled, if it is: writes refused
    /// ([`IndexError::Stalled`]) or reads ([`IndexError::ReadStalled`]).
    pub fn stall(&self) -> Option<IndexError> {
        self.check_writable().and_then(|()| self.check_readable()).err()
    }

    /// `Err(ReadStalled)` while a read of the index's disk has waited past
    /// the stall timeout ([`Index::get_from_disk`]).
    pub fn check_readable(&self) -> Result<(), IndexError> {
        self.check(DiskCalls::reads_stalled, IndexError::ReadStalled)
    }

    /// `Err(Stalled)` while the index's disk is not taking writes
    /// ([`Index::stalled`]): callers that would change the volumes before
    /// the index ask first, so that they change nothing.
    pub fn check_writable(&self) -> Result<(), IndexError> {
        self.check(DiskCalls::writes_stalled, IndexError::Stalled)
    }

    /// `Err(refused(waited))` while `stalled` says the index's disk has
    /// made a call of its kind wait past the stall timeout.
    fn check(
        &self,
        stalled: fn(&DiskCalls, Duration) -> Option<Duration>,
        refused: fn(Duration) -> IndexError,
    ) -> Result<(), IndexError> {
        let waited = self
            .inner
            .stall
            .and_then(|stall| stalled(&self.inner.calls, stall));
        waited.map_or(Ok(()), |waited| Err(refused(waited)))
    }

    /// Runs `write`, a write of the index, timed ([`Index::stalled`]):
    /// only one that succeeds shows the disk answering — a write RocksDB
    /// refused (`no_slowdown`) or one that failed shows nothing of it.
    fn timed<T>(&self, write: impl FnOnce() -> Result<T, IndexError>) -> Result<T, IndexError> {
        let running = self.inner.calls.write(0);
        let result = write();
        if result.is_err() {
            running.failed();
        }
        result
    }

    /// Writes many records at once (for `rebuild`, into a fresh index).
    /// Blocking.
    pub fn import(&self, records: Vec<(Key, Record)>) -> Result<(), IndexError> {
        let mut batch = WriteBatch::default();
        let mut deltas = [State::Live, State::Writing, State::Unlinked].map(|s| (Some(s), 0));
        for (key, record) in &records {
            self.add(&mut batch, key, record)?;
            deltas
                .iter_mut()
                .find(|(s, _)| *s == Some(record.counted_state()))
                .expect("every state")
                .1 += 1;
        }
        self.commit(batch, &deltas)
    }

    /// Up to `limit` records after `after` (exclusive), in key order: how
    /// admin jobs walk the whole index in pages, holding no iterator (and
    /// no snapshot) between pages.
    pub async fn scan(&self, after: Option<String>, limit: usize) -> Result<Vec<(Key, Record)>, IndexError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mode = match &after {
                Some(a) => IteratorMode::From(a.as_bytes(), Direction::Forward),
                None => IteratorMode::Start,
            };
            let mut out = Vec::with_capacity(limit);
            for item in this.inner.db.iterator(mode) {
                let (k, v) = item?;
                if after.as_deref().is_some_and(|a| a.as_bytes() == &*k) {
                    continue;
                }
                let Ok(key) = std::str::from_utf8(&k)
                    .map_err(|_| ())
                    .and_then(|s| Key::new(s).map_err(|_| ()))
                else {
                    tracing::warn!(key = ?String::from_utf8_lossy(&k), "index holds an invalid key; skipped");
                    continue;
                };
                out.push((key, this.decode(&v)?));
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| IndexError::Task(e.to_string()))?
    }
}

/// Runs `f`, which may wait on a disk that never answers, without holding
/// a thread that serves HTTP: on a worker of a multi-thread runtime, the
/// worker's other tasks move to a new thread first. Elsewhere (the
/// blocking pool, a command's own thread) it just runs.
fn off_serving_threads<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_common::record::now_ms;

    fn rec(state: State) -> Record {
        Record {
            state,
            volumes: vec!["v:1".into()],
            size: 1,
            sha256: "s".into(),
            md5: "m".into(),
            created: 0,
            expires: None,
            damaged: vec![],
            write: None,
            replaces: None,
            meta: Default::default(),
            parts: vec![],
        }
    }

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    /// The index's counts as `(live, writing, unlinked)`.
    fn counts(index: &Index) -> (i64, i64, i64) {
        let c = index.counts();
        (c.live, c.writing, c.unlinked)
    }

    /// The expirer's scan reads the expiry index only: live keys, with or
    /// without a TTL, are never touched until they are due.
    #[test]
    fn an_index_open_elsewhere_is_refused_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        let Err(e) = Index::open(dir.path(), false, DEFAULT_CACHE, None) else {
            panic!("opened twice");
        };
        assert!(matches!(e, IndexError::Locked), "{e:?}");
        // Said once: no source repeats it.
        assert!(std::error::Error::source(&e).is_none());
        assert!(e.to_string().contains("another --db"), "{e}");
    }

    /// A record not held in memory is read from its table file wherever
    /// `get` is called: on a worker of a multi-thread runtime (which hands
    /// its other work on first), on its blocking pool, in its `block_on`,
    /// on a current-thread runtime and on a thread of its own. The read is
    /// timed and, once done, leaves nothing counted as a stall.
    #[test]
    fn records_not_in_memory_are_read_from_disk_on_any_thread() {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
            index.import(vec![(key("/cold"), rec(State::Live))]).unwrap();
            index.compact().unwrap();
        }
        // Opened afresh each time: an empty block cache and memtable.
        let cold = || {
            let index = Index::open(dir.path(), false, DEFAULT_CACHE, Some(Duration::from_secs(30))).unwrap();
            let in_memory = !matches!(
                index.inner.db.get_pinned_opt(b"/cold", &index.inner.from_memory),
                Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete
            );
            assert!(!in_memory, "the record is in memory already");
            index
        };
        let read = |index: &Index| {
            let record = index.get(&key("/cold")).unwrap().expect("the record");
            assert_eq!(record.state, State::Live);
            assert!(index.stall().is_none());
        };
        let threads = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let index = cold();
        threads
            .block_on(threads.spawn(async move { read(&index) }))
            .unwrap();
        let index = cold();
        threads
            .block_on(threads.spawn_blocking(move || read(&index)))
            .unwrap();
        let index = cold();
        threads.block_on(async { read(&index) });
        drop(index);
        let index = cold();
        let one_thread = tokio::runtime::Builder::new_current_thread().build().unwrap();
        one_thread.block_on(async { read(&index) });
        drop(index);
        read(&cold());
    }

    #[tokio::test]
    async fn expiry_scan_touches_only_due_entries() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        const TTL_KEYS: u64 = 100_000;
        let with_ttl = |i: u64| Record {
            expires: Some(1_000_000 + i),
            ..rec(State::Live)
        };
        for chunk in (0..TTL_KEYS).collect::<Vec<_>>().chunks(10_000) {
            let batch = chunk
                .iter()
                .map(|&i| (key(&format!("/ttl/{i:06}")), with_ttl(i)))
                .chain(
                    chunk
                        .iter()
                        .map(|&i| (key(&format!("/plain/{i:06}")), rec(State::Live))),
                )
                .collect();
            index.import(batch).unwrap();
        }
        assert_eq!(index.counts().live, 2 * TTL_KEYS as i64);

        // Nothing due: one entry read (the first, not due), nothing returned.
        let none = index.due(999_999, 1000).await.unwrap();
        assert_eq!((none.entries.len(), none.scanned), (0, 1));
        // 50 due: 50 returned, 51 read.
        let some = index.due(1_000_049, 1000).await.unwrap();
        assert_eq!((some.entries.len(), some.scanned), (50, 51));
        assert_eq!(some.entries[0], (1_000_000, "/ttl/000000".to_string()));
        // From after an entry (one that could not be handled): the next
        // ones, that entry left out.
        let next = index
            .due_after(1_000_049, 10, some.entries.get(19).cloned())
            .await
            .unwrap();
        assert_eq!(next.entries.first(), some.entries.get(20));
        assert_eq!(next.entries.len(), 10);
        let last = index
            .due_after(1_000_049, 1000, some.entries.last().cloned())
            .await
            .unwrap();
        assert!(last.entries.is_empty(), "{:?}", last.entries);
        // Everything due: pages of 1000, each key exactly once, and never
        // one of the 100,000 keys without a TTL.
        let mut expired = 0;
        let mut scanned = 0;
        loop {
            let due = index.due(u64::MAX, 1000).await.unwrap();
            scanned += due.scanned;
            if due.entries.is_empty() {
                break;
            }
            for (t, k) in due.entries {
                assert!(k.starts_with("/ttl/"), "{k}");
                index.remove_expired(&key(&k), t, State::Live).await.unwrap();
                expired += 1;
            }
        }
        assert_eq!(expired, TTL_KEYS);
        assert!(scanned <= TTL_KEYS as usize + 101, "{scanned} entries read");
        assert_eq!(index.counts().live, TTL_KEYS as i64);
        assert!(index.get(&key("/ttl/000007")).unwrap().is_none());
        assert!(index.get(&key("/plain/000007")).unwrap().is_some());
    }

    #[tokio::test]
    async fn expired_keys_are_not_listed_and_stale_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        let past = Record {
            expires: Some(1),
            ..rec(State::Live)
        };
        index.put(&key("/gone"), past, None).await.unwrap();
        index.put(&key("/here"), rec(State::Live), None).await.unwrap();
        let page = index.list(Listing::new("/", 10, State::Live)).await.unwrap();
        assert_eq!(page.keys, vec!["/here"]);
        // Rewritten without a TTL: the old entry is stale.
        index
            .put(&key("/gone"), rec(State::Live), Some(State::Live))
            .await
            .unwrap();
        let due = index.due(now_ms(), 10).await.unwrap();
        assert_eq!(due.entries, vec![(1, "/gone".to_string())]);
        index.forget_expiry("/gone", 1).await.unwrap();
        assert!(index.due(now_ms(), 10).await.unwrap().entries.is_empty());
        // The expiry index survives a reopen.
        let later = Record {
            expires: Some(5),
            ..rec(State::Live)
        };
        index.put(&key("/later"), later, None).await.unwrap();
        drop(index);
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        assert_eq!(
            index.due(10, 10).await.unwrap().entries,
            vec![(5, "/later".to_string())]
        );
    }

    /// An index written by earlier versions (JSON records, no counters,
    /// no volume table) opens: its records are rewritten in the binary
    /// format, counted once, and read back unchanged.
    #[tokio::test]
    async fn json_indexes_are_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let with_ttl = Record {
            expires: Some(u64::MAX),
            ..rec(State::Live)
        };
        let old = [
            ("/a", rec(State::Live)),
            ("/b", rec(State::Unlinked)),
            (
                "/c",
                Record::writing(vec!["w:9".into()], 3, "00aa".into(), Some(rec(State::Live))),
            ),
            ("/d", with_ttl),
        ];
        {
            // What the previous version wrote: JSON values, two column families.
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let db = DB::open_cf(&opts, dir.path(), [EXPIRY_CF]).unwrap();
            for (k, r) in &old {
                db.put(k.as_bytes(), r.encode()).unwrap();
            }
        }
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        let c = index.counts();
        // `/c` is a live key being replaced: it counts as live.
        assert_eq!((c.live, c.unlinked, c.writing), (3, 1, 0));
        for (k, r) in &old {
            assert_eq!(index.get(&key(k)).unwrap().as_ref(), Some(r), "{k}");
            let stored = index.inner.db.get(k.as_bytes()).unwrap().unwrap();
            assert_eq!(stored[0], codec::VERSION, "{k} rewritten");
            assert!(stored.len() < r.encode().len() / 2, "{k}: {} bytes", stored.len());
        }
        // Written once: the counters now come from the stats, and new
        // writes keep them.
        index.put(&key("/e"), rec(State::Live), None).await.unwrap();
        drop(index);
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        assert_eq!(index.counts().live, 4);
        assert_eq!(index.get(&key("/c")).unwrap().unwrap().volumes, vec!["w:9"]);
    }

    /// A young index's writes are in the write-ahead log, not yet in a
    /// table: its size counts them, and after a flush the tables do.
    #[tokio::test]
    async fn disk_size_counts_the_log_and_the_tables() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        let empty = index.disk_size();
        for i in 0..200 {
            index
                .put(&key(&format!("/d/{i}")), rec(State::Live), None)
                .await
                .unwrap();
        }
        let logged = index.disk_size();
        assert!(
            logged >= empty + 200 * 20,
            "{empty} B empty, {logged} B after 200 writes"
        );
        index.compact().unwrap();
        let tables: u64 = index
            .inner
            .db
            .live_files()
            .unwrap()
            .iter()
            .map(|f| f.size as u64)
            .sum();
        assert!(tables > 0, "a flush makes tables");
        assert!(index.disk_size() >= tables);
    }

    /// A replace in progress counts the key as live, and so does its
    /// commit or its failure (the old record put back); a write over
    /// nothing counts as writing until it commits or is removed.
    #[tokio::test]
    async fn a_replaced_key_counts_as_live_throughout() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        let k = key("/k");
        let live = rec(State::Live);
        index.put(&k, live.clone(), None).await.unwrap();
        for outcome in ["commits", "fails"] {
            let writing = Record::writing(vec!["v:2".into()], 5, "w".into(), Some(live.clone()));
            index
                .put(&k, writing.clone(), Some(live.counted_state()))
                .await
                .unwrap();
            assert_eq!(counts(&index), (1, 0, 0), "replace under way, then {outcome}");
            // The write commits a new live record, or fails and puts the
            // old one back: either way from the writing record's count.
            index
                .put(&k, live.clone(), Some(writing.counted_state()))
                .await
                .unwrap();
            assert_eq!(counts(&index), (1, 0, 0), "after the replace {outcome}");
        }
        let fresh = Record::writing(vec!["v:2".into()], 5, "w".into(), None);
        index.put(&key("/new"), fresh.clone(), None).await.unwrap();
        assert_eq!(counts(&index), (1, 1, 0));
        index
            .remove(&key("/new"), Some(fresh.counted_state()))
            .await
            .unwrap();
        assert_eq!(counts(&index), (1, 0, 0));
        let unlinked = rec(State::Unlinked);
        let over_unlinked = Record::writing(vec!["v:2".into()], 5, "w".into(), Some(unlinked.clone()));
        index.put(&key("/u"), unlinked, None).await.unwrap();
        index
            .put(&key("/u"), over_unlinked, Some(State::Unlinked))
            .await
            .unwrap();
        assert_eq!(counts(&index), (1, 0, 1), "a write over an unlinked key");
        // An index counted by earlier versions (a replace as writing, no
        // `counts` entry) is counted again once, as above.
        let stats = index.cf(STATS_CF);
        index.inner.db.delete_cf(stats, COUNTS_ENTRY).unwrap();
        index
            .inner
            .db
            .put_cf(stats, counter_entry(State::Writing), 7i64.to_le_bytes())
            .unwrap();
        drop(index);
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        assert_eq!(counts(&index), (1, 0, 1));
    }

    /// A synced index writes on the blocking pool, an unsynced one inline
    /// ([`Index::write`]): both store, replace, remove and count alike.
    #[tokio::test]
    async fn synced_and_unsynced_writes_store_and_count_alike() {
        for sync in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let index = Index::open(dir.path(), sync, DEFAULT_CACHE, None).unwrap();
            index.put(&key("/k/1"), rec(State::Live), None).await.unwrap();
            index.put(&key("/k/2"), rec(State::Live), None).await.unwrap();
            index
                .put(&key("/k/1"), rec(State::Unlinked), Some(State::Live))
                .await
                .unwrap();
            index.remove(&key("/k/2"), Some(State::Live)).await.unwrap();
            assert_eq!(
                index.get(&key("/k/1")).unwrap().unwrap().state,
                State::Unlinked,
                "sync {sync}"
            );
            assert!(index.get(&key("/k/2")).unwrap().is_none(), "sync {sync}");
            assert_eq!(counts(&index), (0, 0, 1), "sync {sync}");
            drop(index);
            let index = Index::open(dir.path(), sync, DEFAULT_CACHE, None).unwrap();
            assert_eq!(counts(&index), (0, 0, 1), "sync {sync}, reopened");
        }
    }

    #[tokio::test]
    async fn stores_lists_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        for k in ["/a/1", "/a/2", "/a/3", "/b/1", "/a0"] {
            index.put(&key(k), rec(State::Live), None).await.unwrap();
        }
        index
            .put(&key("/a/2"), rec(State::Unlinked), Some(State::Live))
            .await
            .unwrap();
        assert_eq!(index.get(&key("/a/2")).unwrap().unwrap().state, State::Unlinked);
        assert!(index.get(&key("/zz")).unwrap().is_none());

        let list = |prefix: &str, start: Option<&str>, limit, state| {
            let l = Listing {
                from: start.map_or(Bound::Beginning, |s| Bound::Start(s.into())),
                ..Listing::new(prefix, limit, state)
            };
            let index = index.clone();
            async move { index.list(l).await.unwrap() }
        };
        let all = list("/a/", None, 10, State::Live).await;
        assert_eq!(all.keys, vec!["/a/1", "/a/3"]);
        assert_eq!(all.next, None);
        let first = list("/", None, 2, State::Live).await;
        assert_eq!(first.keys, vec!["/a/1", "/a/3"]);
        assert_eq!(first.next.as_deref(), Some("/a0"));
        let rest = list("/", first.next.as_deref(), 2, State::Live).await;
        assert_eq!(rest.keys, vec!["/a0", "/b/1"]);
        assert_eq!(rest.next, None);
        let unlinked = list("/", None, 10, State::Unlinked).await;
        assert_eq!(unlinked.keys, vec!["/a/2"]);
        // A start before the prefix is the prefix.
        let before = list("/b", Some("/a"), 10, State::Live).await;
        assert_eq!(before.keys, vec!["/b/1"]);

        index.remove(&key("/a/2"), Some(State::Unlinked)).await.unwrap();
        let c = index.counts();
        assert_eq!((c.live, c.unlinked, c.writing), (4, 0, 0));
        drop(index);
        // Counts are rebuilt on open.
        let index = Index::open(dir.path(), false, DEFAULT_CACHE, None).unwrap();
        assert_eq!(index.counts().live, 4);
    }
}
