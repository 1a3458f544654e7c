//! The blob store: a volume's data directories and everything that touches
//! files.
//!
//! Layout, per data dir (the recommended layout of DESIGN.md, so a human can
//! recover data with `ls` and `cat`):
//!
//! ```text
//! <dir>/aa/bb/<h>        the value's bytes; its metadata (key, size,
//!                        sha256, md5, created, state, write id, block
//!                        CRCs, user metadata) in the extended attribute
//!                        `user.trove.meta` (`getfattr -d <h>` shows it)
//! <dir>/aa/bb/<h>.meta   the same JSON as a sidecar file, instead of the
//!                        attribute: blobs stored before attributes were
//!                        used, metadata too large for one (> 3 KiB),
//!                        file systems without user attributes
//! <dir>/tmp/             uploads in progress; emptied at start-up
//! <dir>/listing/         (first dir only) the keys of every blob, sorted
//!                        (see [`keyset`]): made again by the start-up walk
//!                        unless the volume last stopped cleanly
//! ```
//!
//! A master write that replaces a confirmed copy (a key written again
//! after `UNLINK`, or a live value replaced) sets that copy aside as
//! `<h>.prev` (+ `<h>.prev.meta` for a sidecar copy) until the master
//! confirms the new one — serving it meanwhile to reads pinned to its
//! write — and puts it back if the write fails (see [`previous`]).
//!
//! `h` is the hex sha256 of the key and `aa`, `bb` its first two bytes, so
//! a key can never name a path. A key lives in the data dir chosen by its
//! hash; lookups fall back to the other dirs so that adding a dir does not
//! hide blobs written before.
//!
//! The parts, in the order a newcomer needs them:
//!
//! - this file: the store's type, its errors, reads, deletes, listing;
//! - [`layout`]: where a key's files are, the walk over all blobs;
//! - [`durable`]: the one durable-write sequence (temp file, fsync,
//!   rename, fsync dir) every file goes through;
//! - [`group`]: with `--shared-sync`, the commit queue by which
//!   concurrent small writes, marks and deletes share one sync of their
//!   data dir instead of each paying for its own fsyncs;
//! - [`write`]: the upload pump and the commit of a new blob;
//! - [`meta`]: sidecar changes (the master's mark, damage);
//! - [`previous`]: the value a write replaces, kept until it is settled;
//! - [`verify`]: re-hashing a blob against its sidecar;
//! - [`damage`]: copies found damaged by readers, waiting for the master;
//! - [`recovery`]: opening the dirs, the clean-up after a crash, and the
//!   clean shutdown that lets the next start-up skip it;
//! - [`keyset`]: the sorted set of keys behind `GET /-/listing`, and
//!   [`listing`], the listing read from it;
//! - [`blocks`]: the per-block CRC32C served reads are checked with.
//!
//! Writes go through [`BlobStore::write_stream`]: temp file (its metadata
//! set as its attribute), verify, fsync, rename, fsync dir — with a guard
//! that deletes the temp file on any failure or cancellation. So a blob
//! and its metadata appear together in one rename. A sidecar, where one is
//! used, is renamed into place after the data and deleted before it, so it
//! always describes bytes that exist; a data file without metadata is a
//! crash leftover (or a blob copied without its attribute) and is moved
//! to the data dir's `orphans/` at start-up.

use layout::{open_described, read_meta, TMP_DIR};
use parking_lot::Mutex;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use trove_common::key::Key;
use trove_common::protocol::DirStatus;
use trove_common::record::BlobMeta;

pub mod blocks;
pub mod damage;
mod durable;
mod group;
mod keyset;
mod layout;
mod listing;
mod meta;
mod previous;
mod recovery;
mod verify;
mod write;

pub use meta::StateChange;
pub use trove_common::disk_calls::{self, DiskCalls, ReadKind};
pub use write::Expected;

/// Renames of the same key are serialised through one of these stripes.
const LOCK_STRIPES: usize = 256;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no blob for this key")]
    NotFound,
    #[error("body is {got} bytes but Content-Length announced {expected}")]
    LengthMismatch { expected: u64, got: u64 },
    #[error("body sha256 is {got} but Key-Sha256 announced {expected}")]
    DigestMismatch { expected: String, got: String },
    #[error("the upload was cut off: {0}")]
    BodyAborted(String),
    #[error("no bytes arrived for {0:?}; upload abandoned")]
    Stalled(Duration),
    #[error("data dir is full: {0}")]
    NoSpace(io::Error),
    #[error("data dir is read-only: {0}")]
    ReadOnly(io::Error),
    #[error("blob is damaged: {0}")]
    Corrupt(String),
    #[error("the blob here was not stored by write {0}")]
    OtherWrite(String),
    #[error("write {0} was superseded by a newer write of the same key, or abandoned")]
    Superseded(String),
    /// A read pinned to a write whose copy is gone (replaced since).
    #[error("{}", trove_common::http::REPLACED_MESSAGE)]
    Replaced,
    /// A write to a data dir whose disk has left an earlier write
    /// waiting past the stall timeout.
    #[error("this volume's disk at {dir} is not taking writes: one has waited {waited:?} and none has finished meanwhile; it takes no writes until the disk answers again (the master sends them to other volumes)")]
    DiskStalled { dir: String, waited: Duration },
    /// A write to a data dir whose files are gone (`tmp/` with them):
    /// its disk was unmounted, emptied or replaced under the running
    /// volume.
    #[error("this volume's data dir {dir} has lost its files (its disk was unmounted, emptied or replaced while the volume ran): restart the volume once the disk is back, then run `trove-master verify --repair`")]
    DirGone { dir: String },
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Turns an I/O error into the store error a caller can act on.
fn io_error(e: io::Error) -> StoreError {
    match e.raw_os_error() {
        Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT) => StoreError::NoSpace(e),
        Some(nix::libc::EROFS) => StoreError::ReadOnly(e),
        _ => StoreError::Io(e),
    }
}

/// A volume's data dirs.
pub struct BlobStore {
    dirs: Vec<PathBuf>,
    /// Each data dir's id, in the order of `dirs`.
    ids: Vec<String>,
    /// Each data dir was found without its id (and said so in the log),
    /// in the order of `dirs` ([`BlobStore::dir_status`]).
    id_lost: Vec<std::sync::atomic::AtomicBool>,
    fsync: bool,
    /// How long a call may wait on a disk before the disk is taken for
    /// not answering ([`DiskCalls`]): the volume's stall timeout.
    stall: Duration,
    /// Small writes, marks and deletes share syncs (`--shared-sync`):
    /// one `syncfs` of the data dir per group of concurrent callers.
    shared_sync: bool,
    /// Each data dir's commit queue, in the order of `dirs` (used with
    /// `fsync` and `shared_sync` only).
    syncs: Vec<group::DirSync>,
    /// Whether every data dir's file system takes user extended
    /// attributes: blobs' metadata then lives in one (see [`layout`]).
    xattrs: bool,
    blobs: AtomicU64,
    blob_bytes: AtomicU64,
    /// Every key with a blob, sorted: what `GET /-/listing` walks.
    keys: Arc<keyset::KeySet>,
    stripes: Vec<Mutex<()>>,
    /// Each data dir's leaf dirs known to exist durably, in the order of
    /// `dirs`.
    durable_dirs: Vec<durable::DurableDirs>,
    /// Each data dir's calls that wait on its disk, in the order of
    /// `dirs` ([`BlobStore::disk_calls`]).
    disk_calls: Vec<Arc<DiskCalls>>,
    /// The master write each key's upload in progress belongs to: a newer
    /// write (or the master's abort) takes the key over, and an older
    /// upload that finishes late is then refused instead of displacing it.
    writers: Mutex<std::collections::HashMap<String, String>>,
    /// Writes the master aborted, most recent last (bounded): an upload of
    /// one that arrives or finishes after its abort is refused.
    aborted: Mutex<std::collections::VecDeque<(String, String)>>,
    /// Copies found damaged while being read, for the master to repair.
    damage: damage::DamageLog,
    /// Each data dir's lock file, held locked for the store's life
    /// ([`layout::LOCK_FILE`]).
    _locks: Vec<std::fs::File>,
}

/// What [`BlobStore::commit`] makes durable.
#[derive(Debug, Clone, Copy)]
enum Durable<'a> {
    /// A file's bytes and attributes.
    File(&'a Path),
    /// The entries of the directory holding this path (a rename or an
    /// unlink there).
    DirOf(&'a Path),
}

/// The copy a read is pinned to (by the master's redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The copy master write `W` stored (`?write=W`).
    Write(String),
    /// For a value stored before writes had ids: the copy with these
    /// bytes (`?sha256=H`, hex).
    Sha256(String),
}

impl Pin {
    fn matches(&self, meta: &BlobMeta) -> bool {
        match self {
            Pin::Write(w) => meta.write.as_deref() == Some(w.as_str()),
            Pin::Sha256(h) => meta.sha256.eq_ignore_ascii_case(h),
        }
    }
}

/// An open blob, ready to be served.
pub struct OpenBlob {
    pub file: File,
    pub meta: BlobMeta,
    /// The data dir it is in (its place in the store's list).
    pub dir: usize,
}

impl BlobStore {
    /// Which data dir is `key`'s home, where its blob is looked for first
    /// (its place in the store's list).
    fn home_dir_index(&self, key: &Key) -> usize {
        self.dir_of(self.home_dir(key))
    }

    /// The calls that wait on the disk of `key`'s home dir, where its
    /// blob is looked for first and written.
    pub fn home_disk(&self, key: &Key) -> Arc<DiskCalls> {
        self.disk_calls(self.home_dir_index(key))
    }

    /// The calls that wait on the disk of data dir `dir`.
    pub fn disk_calls(&self, dir: usize) -> Arc<DiskCalls> {
        Arc::clone(&self.disk_calls[dir.min(self.disk_calls.len() - 1)])
    }

    /// The calls of `key`'s home dir, where it is written, unless that
    /// disk is not taking writes ([`DiskCalls::writes_stalled`]): then this
    /// one is refused at once rather than left to join the wait on a
    /// thread of its own.
    pub fn disk_for_writing(&self, key: &Key) -> Result<Arc<DiskCalls>, StoreError> {
        let dir = self.home_dir_index(key);
        let calls = self.disk_calls(dir);
        match calls.writes_stalled(self.stall) {
            Some(waited) => Err(StoreError::DiskStalled {
                dir: self.dirs[dir].display().to_string(),
                waited,
            }),
            None => Ok(calls),
        }
    }

    /// Runs `f`, a small write to `key`'s home disk (a delete, a mark, an
    /// abort), timed as a write that reaches the disk — or refuses it at
    /// once, without touching the disk, while that disk is not taking
    /// writes. Blocking.
    pub fn small_write<T>(
        &self,
        key: &Key,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let disk = self.disk_for_writing(key)?;
        let _timed = disk.write(0);
        f()
    }

    /// Runs `f` — a small write's commit, a delete, a mark, an abort — on
    /// the blocking pool, or without fsync, when nothing in it waits for
    /// the disk, perhaps on the calling thread ([`disk_calls::short_call`]).
    pub async fn short_call<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&BlobStore) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(self);
        Ok(disk_calls::short_call(!self.fsync, move || f(&store)).await?)
    }

    /// Which data dir `path` is in (the first, if none).
    fn dir_of(&self, path: &Path) -> usize {
        self.dirs.iter().position(|d| path.starts_with(d)).unwrap_or(0)
    }

    /// Copies found damaged while being read, waiting for the master.
    pub fn damage(&self) -> &damage::DamageLog {
        &self.damage
    }

    /// Whether writes are fsynced.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// Has concurrent small writes, marks and deletes share syncs of their
    /// data dirs' file systems (`--shared-sync`, see [`group`]).
    pub fn with_shared_sync(mut self, on: bool) -> BlobStore {
        self.shared_sync = on;
        self
    }

    /// Takes a disk that leaves a call waiting past `stall` for one not
    /// answering (the volume's `--stall-timeout`; 30 s unless set).
    pub fn with_stall_timeout(mut self, stall: Duration) -> BlobStore {
        self.stall = stall;
        self
    }

    /// Whether a change of a file of `size` bytes is made durable by a
    /// shared sync ([`BlobStore::commit`]).
    fn shares_sync(&self, size: u64) -> bool {
        self.fsync && self.shared_sync && size <= group::SHARED_SYNC_MAX
    }

    /// Makes `what` durable (nothing with fsync off): by a sync shared
    /// with concurrent callers with `--shared-sync` — which covers
    /// everything the caller changed in that data dir — else by an fsync
    /// of that file or directory. Blocking.
    fn commit(&self, what: Durable<'_>) -> Result<(), StoreError> {
        if !self.fsync {
            return Ok(());
        }
        let path = match what {
            Durable::File(p) | Durable::DirOf(p) => p,
        };
        if !self.shared_sync {
            return match what {
                Durable::File(p) => File::open(p).and_then(|f| f.sync_all()).map_err(io_error),
                Durable::DirOf(p) => durable::sync_dir(p.parent().expect("a blob file has a parent")),
            };
        }
        let i = self
            .dirs
            .iter()
            .position(|d| path.starts_with(d))
            .expect("a blob's path is in a data dir");
        self.syncs[i].commit().map_err(io_error)
    }

    /// [`BlobStore::commit`] of several changed files: with shared syncs,
    /// one for each data dir among them. Blocking.
    fn commit_files(&self, paths: &[PathBuf]) -> Result<(), StoreError> {
        let mut done: Vec<&Path> = vec![];
        for path in paths {
            let dir = self.dirs.iter().find(|d| path.starts_with(d));
            if !self.shared_sync || dir.is_some_and(|d| !done.contains(&d.as_path())) {
                self.commit(Durable::File(path))?;
                done.extend(dir.map(PathBuf::as_path));
            }
        }
        Ok(())
    }

    /// Number of blobs and their total size.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.blobs.load(Ordering::Relaxed),
            self.blob_bytes.load(Ordering::Relaxed),
        )
    }

    /// Each data dir's space, whether it takes writes, whether its disk
    /// is not answering ([`DiskCalls::stalled`]), and the id it holds now.
    /// A dir whose disk was unmounted, emptied or replaced under the
    /// running volume no longer holds the id it started with: it is
    /// reported as it is (another id, or none), which tells the master
    /// that its blobs are gone, and readers go to other replicas until a
    /// `verify --repair` (instead of being sent here for a `404`).
    pub fn dir_status(&self) -> Vec<DirStatus> {
        self.dirs
            .iter()
            .zip(&self.ids)
            .zip(&self.disk_calls)
            .enumerate()
            .map(|(i, ((d, id), calls))| {
                let (free, total) = nix::sys::statvfs::statvfs(d)
                    .map(|s| {
                        let frag = s.fragment_size();
                        (s.blocks_available() * frag, s.blocks() * frag)
                    })
                    .unwrap_or((0, 0));
                let writable = nix::unistd::access(&d.join(TMP_DIR), nix::unistd::AccessFlags::W_OK).is_ok();
                let id_now = std::fs::read_to_string(d.join(layout::ID_FILE))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                let lost = id_now != *id;
                if lost != self.id_lost[i].swap(lost, Ordering::Relaxed) && lost {
                    tracing::warn!(dir = %d.display(), "this data dir no longer holds its id (its disk was unmounted, emptied or replaced while the volume ran): its blobs are taken as lost; restart the volume once the disk is back, and run `verify --repair`");
                }
                DirStatus {
                    path: d.display().to_string(),
                    id: id_now,
                    free_bytes: free,
                    total_bytes: total,
                    writable,
                    stalled_ms: calls.stalled(self.stall).map(|waited| waited.as_millis() as u64),
                }
            })
            .collect()
    }

    /// Opens a key's blob and its sidecar. Blocking.
    pub fn open_blob(&self, key: &Key) -> Result<OpenBlob, StoreError> {
        // Under the key's stripe, so that a replacement cannot slip in
        // between reading the sidecar and opening the data: the open file
        // stays what the sidecar describes, whatever is renamed later.
        let _stripe = self.stripe(key);
        let found = self.find(key)?.ok_or(StoreError::NotFound)?;
        open_described(&found.data, found.meta, self.dir_of(&found.data))
    }

    /// Whether this volume holds any copy of `key`, in place or kept
    /// aside (one whose metadata cannot be read counts). Blocking.
    pub fn holds_any_copy(&self, key: &Key) -> bool {
        let _stripe = self.stripe(key);
        if !matches!(self.find(key), Ok(None)) {
            return true;
        }
        self.dirs.iter().any(|dir| {
            let (data, _) = Self::paths_in(dir, key);
            previous::prev_of(&data).0.exists()
        })
    }

    /// Opens the copy of `key` a pinned read asks for: the blob in place,
    /// or the previous value kept aside while a newer write is
    /// unconfirmed. [`StoreError::Replaced`] when neither is that copy
    /// (the value was replaced after the reader's redirect); the blob's
    /// own error when its metadata cannot be read (a damaged copy is not
    /// a replaced one). Blocking.
    pub fn open_pinned(&self, key: &Key, pin: &Pin) -> Result<OpenBlob, StoreError> {
        let _stripe = self.stripe(key);
        let unreadable = match self.find(key) {
            Ok(Some(found)) if pin.matches(&found.meta) => {
                return open_described(&found.data, found.meta, self.dir_of(&found.data))
            }
            Ok(_) => None,
            Err(e) => Some(e),
        };
        for dir in &self.dirs {
            let (data, _) = Self::paths_in(dir, key);
            let (prev, _) = previous::prev_of(&data);
            match read_meta(&prev) {
                Ok(meta) if pin.matches(&meta) => return open_described(&prev, meta, self.dir_of(&prev)),
                Ok(_) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Err(unreadable.unwrap_or(StoreError::Replaced))
    }

    /// Deletes a key's blob — every copy, in every data dir (a copy can be
    /// left in another dir when the dir list changed); `false` when there
    /// was none. Blocking.
    pub fn delete(&self, key: &Key) -> Result<bool, StoreError> {
        let _stripe = self.stripe(key);
        let mut found = false;
        for dir in &self.dirs {
            found |= self.remove_copy(dir, key)?;
            found |= self.remove_previous(dir, key)?;
        }
        // No file of the key is left in any dir, and none can come back
        // while its stripe is held: no need to look again.
        self.keys.remove(key.as_bytes());
        Ok(found)
    }

    /// Removes the copy of `key` in `dir`, if there is one (caller holds
    /// the key's stripe). The sidecar goes first: a sidecar must never
    /// outlive its data.
    fn remove_copy(&self, dir: &Path, key: &Key) -> Result<bool, StoreError> {
        let (data, meta) = Self::paths_in(dir, key);
        let size = match fs::metadata(&data) {
            Ok(m) => m.len(),
            Err(_) if !meta.exists() => return Ok(false),
            Err(_) => 0,
        };
        match fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        match durable::remove_blob_file(dir, &data, Some(size)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        self.commit(Durable::DirOf(&data))?;
        self.blobs.fetch_sub(1, Ordering::Relaxed);
        self.blob_bytes.fetch_sub(size, Ordering::Relaxed);
        Ok(true)
    }

    /// Sends every blob's sidecar to `tx` until the walk ends or the
    /// receiver goes away. Blocking.
    pub fn list(&self, tx: mpsc::Sender<BlobMeta>) -> io::Result<()> {
        let mut closed = false;
        self.walk(|data| {
            if closed {
                return;
            }
            match previous::listed(data) {
                Ok(Some((m, _))) => closed = tx.blocking_send(m).is_err(),
                Ok(None) => {} // deleted while listing
                Err(e) => tracing::warn!(path = %data.display(), error = %e, "unreadable sidecar skipped"),
            }
        })
    }
}

#[cfg(test)]
mod tests;
