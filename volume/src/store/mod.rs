//! The blob store: a volume's data directories and everything that touches
//! files.
//!
//! Layout, per data dir (the recommended layout of DESIGN.md, so a human can
//! recover data with `ls` and `cat`):
//!
//! ```text
//! <dir>/aa/bb/<h>        the value's bytes
//! <dir>/aa/bb/<h>.meta   JSON sidecar: key, size, sha256, md5, created,
//!                        state, write id, block CRCs, metadata
//! <dir>/tmp/             uploads in progress; emptied at start-up
//! ```
//!
//! A master write that replaces a confirmed copy (a key written again
//! after `UNLINK`, or a live value replaced) sets that copy aside as
//! `<h>.prev` + `<h>.prev.meta` until the master confirms the new one —
//! serving it meanwhile to reads pinned to its write — and puts it back if
//! the write fails (see [`previous`]).
//!
//! `h` is the hex sha256 of the key and `aa`, `bb` its first two bytes, so
//! a key can never name a path. A key lives in the data dir chosen by its
//! hash; lookups fall back to the other dirs so that adding a dir does not
//! hide blobs written before.
//!
//! Writes go through [`BlobStore::write_stream`]: temp file, verify, fsync,
//! rename, fsync dir — with a guard that deletes the temp file on any
//! failure or cancellation. The sidecar is renamed into place after the
//! data, and deleted before it, so a sidecar always describes bytes that
//! exist; a data file without a sidecar is a crash leftover and is removed
//! at start-up.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use trove_common::digest::{ContentHasher, Digests};
use trove_common::key::Key;
use trove_common::protocol::{DirStatus, Verified};
use trove_common::record::{now_ms, BlobMeta, BlobState, Meta};

pub mod blocks;
mod previous;

/// Name of the temporary-upload folder inside each data dir.
const TMP_DIR: &str = "tmp";
/// The file holding a data dir's identity: a random id made when the dir
/// is first used. A dir that comes back with another id (or none) is not
/// the one that held the blobs, and the master stops trusting it for them.
const ID_FILE: &str = "volume-id";
/// Suffix of a blob's sidecar.
const META_SUFFIX: &str = ".meta";
/// Chunks buffered between the HTTP body and the blocking writer thread.
const WRITE_QUEUE: usize = 16;
/// Write buffer in front of each temp file.
const WRITE_BUFFER: usize = 1 << 20;
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
    fsync: bool,
    blobs: AtomicU64,
    blob_bytes: AtomicU64,
    stripes: Vec<Mutex<()>>,
    /// The master write each key's upload in progress belongs to: a newer
    /// write (or the master's abort) takes the key over, and an older
    /// upload that finishes late is then refused instead of displacing it.
    writers: Mutex<std::collections::HashMap<String, String>>,
    /// Writes the master aborted, most recent last (bounded): an upload of
    /// one that arrives or finishes after its abort is refused.
    aborted: Mutex<std::collections::VecDeque<(String, String)>>,
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
}

impl BlobStore {
    /// Opens (creating if needed) the data dirs: checks each is writable,
    /// empties its `tmp/`, removes data files left without a sidecar by a
    /// crash, and counts the blobs. Blocking.
    pub fn open(dirs: Vec<PathBuf>, fsync: bool) -> anyhow::Result<BlobStore> {
        use anyhow::Context;
        anyhow::ensure!(!dirs.is_empty(), "give at least one data dir");
        let mut store = BlobStore {
            dirs,
            ids: vec![],
            fsync,
            blobs: AtomicU64::new(0),
            blob_bytes: AtomicU64::new(0),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            writers: Mutex::default(),
            aborted: Mutex::default(),
        };
        let mut ids = Vec::with_capacity(store.dirs.len());
        for dir in &store.dirs {
            let tmp = dir.join(TMP_DIR);
            fs::create_dir_all(&tmp).with_context(|| format!("cannot create data dir {}", dir.display()))?;
            for entry in fs::read_dir(&tmp)? {
                let path = entry?.path();
                fs::remove_file(&path)
                    .with_context(|| format!("cannot remove stale temp file {}", path.display()))?;
            }
            let probe = tmp.join("write-probe");
            File::create(&probe)
                .and_then(|mut f| f.write_all(b"ok"))
                .with_context(|| format!("data dir {} is not writable", dir.display()))?;
            fs::remove_file(&probe)?;
            let id = dir_id(dir, fsync)
                .with_context(|| format!("cannot read or create the id of data dir {}", dir.display()))?;
            ids.push(id);
        }
        store.ids = ids;
        let (mut blobs, mut bytes) = (0, 0);
        store.walk(|data| {
            previous::recover(data);
            let meta = sidecar_of(data);
            if meta.exists() {
                blobs += 1;
                bytes += fs::metadata(data).map(|m| m.len()).unwrap_or(0);
            } else if data.exists() {
                tracing::warn!(path = %data.display(), "removing data file without sidecar (left by a crash)");
                let _ = fs::remove_file(data);
            }
        })?;
        store.blobs.store(blobs, Ordering::Relaxed);
        store.blob_bytes.store(bytes, Ordering::Relaxed);
        Ok(store)
    }

    /// Whether writes are fsynced.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// Number of blobs and their total size.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.blobs.load(Ordering::Relaxed),
            self.blob_bytes.load(Ordering::Relaxed),
        )
    }

    /// Free and total space of each data dir.
    pub fn dir_status(&self) -> Vec<DirStatus> {
        self.dirs
            .iter()
            .zip(&self.ids)
            .map(|(d, id)| {
                let (free, total) = nix::sys::statvfs::statvfs(d)
                    .map(|s| {
                        let frag = s.fragment_size();
                        (s.blocks_available() * frag, s.blocks() * frag)
                    })
                    .unwrap_or((0, 0));
                let writable = nix::unistd::access(&d.join(TMP_DIR), nix::unistd::AccessFlags::W_OK).is_ok();
                DirStatus {
                    path: d.display().to_string(),
                    id: id.clone(),
                    free_bytes: free,
                    total_bytes: total,
                    writable,
                }
            })
            .collect()
    }

    /// The data dir a key is written to.
    fn home_dir(&self, key: &Key) -> &Path {
        let h = key.hash();
        let n = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
        &self.dirs[(n % self.dirs.len() as u64) as usize]
    }

    /// `(data, sidecar)` paths of a key inside `dir`.
    fn paths_in(dir: &Path, key: &Key) -> (PathBuf, PathBuf) {
        let data = dir.join(key.blob_relpath());
        let meta = sidecar_of(&data);
        (data, meta)
    }

    /// Where the key's blob is: its home dir first, then the others.
    fn locate(&self, key: &Key) -> Option<(PathBuf, PathBuf)> {
        let home = self.home_dir(key);
        std::iter::once(home)
            .chain(self.dirs.iter().map(PathBuf::as_path).filter(|d| *d != home))
            .map(|d| Self::paths_in(d, key))
            .find(|(_, meta)| meta.exists())
    }

    fn stripe(&self, key: &Key) -> std::sync::MutexGuard<'_, ()> {
        let i = key.hash()[0] as usize % self.stripes.len();
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a key's blob and its sidecar. Blocking.
    pub fn open_blob(&self, key: &Key) -> Result<OpenBlob, StoreError> {
        // Under the key's stripe, so that a replacement cannot slip in
        // between reading the sidecar and opening the data: the open file
        // stays what the sidecar describes, whatever is renamed later.
        let _stripe = self.stripe(key);
        let (data, meta_path) = self.locate(key).ok_or(StoreError::NotFound)?;
        let meta = read_meta(&meta_path)?;
        open_described(&data, meta)
    }

    /// Opens the copy of `key` a pinned read asks for: the blob in place,
    /// or the previous value kept aside while a newer write is
    /// unconfirmed. [`StoreError::Replaced`] when neither is that copy
    /// (the value was replaced after the reader's redirect). Blocking.
    pub fn open_pinned(&self, key: &Key, pin: &Pin) -> Result<OpenBlob, StoreError> {
        let _stripe = self.stripe(key);
        if let Some((data, meta_path)) = self.locate(key) {
            if let Ok(meta) = read_meta(&meta_path) {
                if pin.matches(&meta) {
                    return open_described(&data, meta);
                }
            }
        }
        for dir in &self.dirs {
            let (data, _) = Self::paths_in(dir, key);
            let (prev, prev_meta) = previous::prev_of(&data);
            match read_meta(&prev_meta) {
                Ok(meta) if pin.matches(&meta) => return open_described(&prev, meta),
                Ok(_) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Replaced)
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
        match fs::remove_file(&data) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        if self.fsync {
            sync_dir(data.parent().expect("blob has a parent"))?;
        }
        self.blobs.fetch_sub(1, Ordering::Relaxed);
        self.blob_bytes.fetch_sub(size, Ordering::Relaxed);
        Ok(true)
    }

    /// Calls `f(data path)` once for every blob hash in every data dir
    /// that has any file: data, sidecar or a previous value.
    fn walk(&self, mut f: impl FnMut(&Path)) -> io::Result<()> {
        for dir in &self.dirs {
            for a in read_dir_sorted(dir)? {
                if a.file_name().is_some_and(|n| n == TMP_DIR) || !a.is_dir() {
                    continue;
                }
                for b in read_dir_sorted(&a)? {
                    if !b.is_dir() {
                        continue;
                    }
                    // Blob files are named by 64 hex digits, plus suffixes
                    // for the sidecar and a previous value; skip anything else.
                    let mut hashes: Vec<String> = read_dir_sorted(&b)?
                        .iter()
                        .filter_map(|p| p.file_name()?.to_str()?.get(..64).map(str::to_string))
                        .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                        .collect();
                    hashes.dedup();
                    for h in hashes {
                        f(&b.join(h));
                    }
                }
            }
        }
        Ok(())
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
                Ok(Some(m)) => closed = tx.blocking_send(m).is_err(),
                Ok(None) => {} // deleted while listing
                Err(e) => tracing::warn!(path = %data.display(), error = %e, "unreadable sidecar skipped"),
            }
        })
    }

    /// Streams `body` into the key's blob, replacing any blob already there
    /// atomically. What `expected` announces is checked before anything
    /// becomes visible; `stall` bounds the wait for each chunk. On any
    /// error, nothing is left behind.
    pub async fn write_stream<S, E>(
        self: &Arc<Self>,
        key: &Key,
        body: S,
        expected: Expected,
        stall: Duration,
    ) -> Result<BlobMeta, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let (tx, mut rx) = mpsc::channel::<WriteMsg>(WRITE_QUEUE);
        let store = Arc::clone(self);
        let key_owned = key.clone();
        let announced_len = expected.len;
        let write = expected.write.clone();
        // The disk work (hashing, write, fsync, rename) runs on a blocking
        // thread; this task only moves chunks from the socket to it.
        let writer = tokio::task::spawn_blocking(move || {
            let mut w = store.begin_write(&key_owned, expected.write.as_deref())?;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    WriteMsg::Data(chunk) => w.write(&chunk)?,
                    WriteMsg::Finish => return w.commit(expected),
                }
            }
            // Sender dropped without Finish: the upload was abandoned, and
            // the writer's guard removes the temp file.
            Err(StoreError::BodyAborted("upload cancelled".into()))
        });

        futures::pin_mut!(body);
        let mut received: u64 = 0;
        let outcome: Result<(), StoreError> = loop {
            match tokio::time::timeout(stall, body.next()).await {
                Err(_) => break Err(StoreError::Stalled(stall)),
                Ok(None) => break Ok(()),
                Ok(Some(Err(e))) => break Err(StoreError::BodyAborted(e.to_string())),
                Ok(Some(Ok(chunk))) => {
                    received += chunk.len() as u64;
                    if let Some(len) = announced_len.filter(|n| received > *n) {
                        break Err(StoreError::LengthMismatch {
                            expected: len,
                            got: received,
                        });
                    }
                    if tx.send(WriteMsg::Data(chunk)).await.is_err() {
                        // The writer failed (a full disk…). Read on for a
                        // while, so that the caller gets our answer rather
                        // than a connection reset in the middle of sending.
                        trove_common::http::drain(&mut body, trove_common::http::DRAIN_LIMIT, stall).await;
                        break Ok(());
                    }
                }
            }
        };
        let result = match outcome {
            Ok(()) => {
                let _ = tx.send(WriteMsg::Finish).await;
                drop(tx);
                writer.await.map_err(|e| StoreError::Io(io::Error::other(e)))?
            }
            Err(e) => {
                drop(tx); // the writer sees no Finish and discards the temp file
                let _ = writer.await;
                Err(e)
            }
        };
        if let (Err(_), Some(write)) = (&result, &write) {
            self.forget_writer(key, write);
        }
        result
    }

    /// Writes `meta` to a temp file in `dir`'s tmp folder (fsynced when
    /// fsync is on), ready to be renamed into place.
    fn stage_meta(&self, dir: &Path, meta: &BlobMeta) -> Result<TempFile, StoreError> {
        let name: u64 = rand::random();
        let temp = TempFile {
            path: dir.join(TMP_DIR).join(format!("{name:016x}.meta.tmp")),
        };
        let mut f = File::create(&temp.path).map_err(io_error)?;
        f.write_all(&meta.encode()).map_err(io_error)?;
        if self.fsync {
            f.sync_all().map_err(io_error)?;
        }
        Ok(temp)
    }

    /// Changes the state recorded in a blob's sidecar, and its md5 when
    /// given (atomically, durably). Blocking.
    ///
    /// With `write`, the blob must be the one that master write stored
    /// (else [`StoreError::OtherWrite`]); confirming it (`live`) drops the
    /// value it replaced.
    pub fn set_state(
        &self,
        key: &Key,
        state: BlobState,
        md5: Option<String>,
        write: Option<&str>,
    ) -> Result<BlobMeta, StoreError> {
        let _stripe = self.stripe(key);
        if let Some(write) = write {
            let (_, meta_path) = self.locate(key).ok_or(StoreError::NotFound)?;
            if read_meta(&meta_path)?.write.as_deref() != Some(write) {
                return Err(StoreError::OtherWrite(write.to_string()));
            }
        }
        let mut was_pending = false;
        let meta = self.update_meta_locked(key, |m| {
            was_pending = m.state == BlobState::Pending;
            m.state = state;
            if let Some(md5) = md5 {
                m.md5 = md5;
            }
        })?;
        trove_common::crash::point("volume-marked");
        // Confirming the blob in place settles the write that stored it:
        // the value it replaced is no longer needed.
        if state == BlobState::Live && (write.is_some() || was_pending) {
            for dir in &self.dirs {
                self.remove_previous(dir, key)?;
            }
        }
        Ok(meta)
    }

    /// Rewrites a blob's sidecar with `change` applied, if it changes
    /// anything (atomically, durably). Blocking.
    fn update_meta(&self, key: &Key, change: impl FnOnce(&mut BlobMeta)) -> Result<BlobMeta, StoreError> {
        let _stripe = self.stripe(key);
        self.update_meta_locked(key, change)
    }

    /// [`BlobStore::update_meta`] for a caller that holds the key's stripe.
    fn update_meta_locked(
        &self,
        key: &Key,
        change: impl FnOnce(&mut BlobMeta),
    ) -> Result<BlobMeta, StoreError> {
        let (data, meta_path) = self.locate(key).ok_or(StoreError::NotFound)?;
        let mut meta = read_meta(&meta_path)?;
        let before = meta.clone();
        change(&mut meta);
        if meta == before {
            return Ok(meta);
        }
        let dir = data.ancestors().nth(3).expect("<dir>/aa/bb/<hash>").to_path_buf();
        let temp = self.stage_meta(&dir, &meta)?;
        // The old sidecar lands at the temp path, and `temp` deletes it.
        replace_file(&temp.path, &meta_path).map_err(io_error)?;
        if self.fsync {
            sync_dir(meta_path.parent().expect("sidecar has a parent"))?;
        }
        Ok(meta)
    }

    /// Re-reads a blob and checks its bytes against its sidecar (bit rot,
    /// truncation). Blocking; reads the whole file.
    pub fn verify(&self, key: &Key) -> Result<Verified, StoreError> {
        let (data, meta_path) = self.locate(key).ok_or(StoreError::NotFound)?;
        let meta = read_meta(&meta_path)?;
        let mut file = File::open(&data).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound,
            _ => e.into(),
        })?;
        let mut hasher = ContentHasher::sha256_only();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = io::Read::read(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let d = hasher.finish();
        let ok = d.size == meta.size && d.sha256_hex() == meta.sha256;
        let meta = if ok || meta.damaged {
            meta
        } else {
            self.mark_damaged(key, &meta)?
        };
        Ok(Verified {
            actual_sha256: d.sha256_hex(),
            actual_size: d.size,
            ok,
            meta,
        })
    }

    /// Records that the copy of `key` described by `seen` is damaged, so it
    /// is never served again; a replacement (a pull, a new PUT) brings a
    /// fresh sidecar. Only that copy is marked: one that replaced it
    /// meanwhile is left alone. Blocking.
    pub fn mark_damaged(&self, key: &Key, seen: &BlobMeta) -> Result<BlobMeta, StoreError> {
        let (sha256, created) = (seen.sha256.clone(), seen.created);
        self.update_meta(key, |m| {
            if m.sha256 == sha256 && m.created == created {
                m.damaged = true;
            }
        })
    }

    fn begin_write(&self, key: &Key, write: Option<&str>) -> Result<BlobWriter<'_>, StoreError> {
        if let Some(write) = write {
            if self.was_aborted(key, write) {
                return Err(StoreError::Superseded(write.to_string()));
            }
            let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
            // Write ids grow with time: an older upload that starts late
            // (delayed in a network or a frozen volume) must not take the
            // key from a newer one.
            if writers.get(key.as_str()).is_some_and(|w| w.as_str() > write) {
                return Err(StoreError::Superseded(write.to_string()));
            }
            writers.insert(key.as_str().to_string(), write.to_string());
        }
        let dir = self.home_dir(key).to_path_buf();
        let name: u64 = rand::random();
        let temp = TempFile {
            path: dir.join(TMP_DIR).join(format!("{name:016x}.tmp")),
        };
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp.path)
            .map_err(io_error)?;
        Ok(BlobWriter {
            store: self,
            key: key.clone(),
            dir,
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            temp,
            hasher: ContentHasher::sha256_only(),
            blocks: blocks::BlockSums::default(),
        })
    }
}

enum WriteMsg {
    Data(Bytes),
    Finish,
}

/// What an upload must turn out to be, checked before anything becomes
/// visible, and the state its sidecar starts in.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The announced length (`Content-Length`).
    pub len: Option<u64>,
    /// The announced sha256 (`Key-Sha256`, or the record's for a pull).
    pub sha256: Option<[u8; 32]>,
    /// The sidecar's state once stored.
    pub state: BlobState,
    /// The value's md5 (hex), when the caller knows it: volumes hash only
    /// sha256, and learn the md5 from the master (here for a pull, or later
    /// with `set_state`).
    pub md5: Option<String>,
    /// The master write this upload belongs to (`Trove-Write`): a confirmed
    /// copy it replaces is set aside until that write is confirmed or
    /// aborted. Without it (a pull), the new copy replaces outright.
    pub write: Option<String>,
    /// The write whose copy this master write replaces (`Trove-Replaces`):
    /// that copy is set aside even if its confirmation never arrived
    /// (the master's record says it is live).
    pub replaces: Option<String>,
    /// For a pull: the write the copied value is of (the master's record),
    /// recorded in the sidecar so that reads pinned to it find this copy.
    pub copy_of: Option<String>,
    /// The value's metadata, kept in the sidecar.
    pub meta: Meta,
}

/// Deletes its file when dropped, unless [`TempFile::keep`] was called.
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// The file was renamed away: nothing to clean up.
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// One upload in progress, on a blocking thread.
struct BlobWriter<'a> {
    store: &'a BlobStore,
    key: Key,
    dir: PathBuf,
    file: BufWriter<File>,
    temp: TempFile,
    hasher: ContentHasher,
    blocks: blocks::BlockSums,
}

impl BlobWriter<'_> {
    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(chunk);
        self.blocks.update(chunk);
        self.file.write_all(chunk).map_err(io_error)
    }

    /// Verifies, makes durable, and renames into place.
    fn commit(self, expected: Expected) -> Result<BlobMeta, StoreError> {
        let BlobWriter {
            store,
            key,
            dir,
            file,
            temp,
            hasher,
            blocks,
        } = self;
        let file = file.into_inner().map_err(|e| io_error(e.into_error()))?;
        let digests: Digests = hasher.finish();
        if let Some(len) = expected.len.filter(|n| *n != digests.size) {
            return Err(StoreError::LengthMismatch {
                expected: len,
                got: digests.size,
            });
        }
        if let Some(sha) = expected.sha256.filter(|s| *s != digests.sha256) {
            return Err(StoreError::DigestMismatch {
                expected: hex::encode(sha),
                got: digests.sha256_hex(),
            });
        }
        if store.fsync {
            file.sync_all().map_err(io_error)?;
        }
        drop(file);
        let meta = BlobMeta {
            key: key.as_str().to_string(),
            size: digests.size,
            sha256: digests.sha256_hex(),
            md5: expected.md5.unwrap_or_default(),
            created: now_ms(),
            state: expected.state,
            damaged: false,
            write: expected.write.clone().or(expected.copy_of.clone()),
            crc32c: Some(blocks.finish()),
            meta: expected.meta.clone(),
        };
        let meta_temp = store.stage_meta(&dir, &meta)?;
        let (data_path, meta_path) = BlobStore::paths_in(&dir, &key);
        let parent = data_path.parent().expect("blob has a parent");
        let _stripe = store.stripe(&key);
        if let Some(write) = &expected.write {
            // Still this key's newest write? (A newer upload or the
            // master's abort took it over while this one was in flight.)
            let mut writers = store.writers.lock().unwrap_or_else(|p| p.into_inner());
            let newer_in_place = store
                .locate(&key)
                .and_then(|(_, meta)| read_meta(&meta).ok())
                .and_then(|m| m.write)
                .is_some_and(|w| w.as_str() > write.as_str());
            if writers.get(key.as_str()) != Some(write) || newer_in_place || store.was_aborted(&key, write) {
                return Err(StoreError::Superseded(write.clone()));
            }
            writers.remove(key.as_str());
        }
        create_dirs_durably(parent, store.fsync)?;
        // Replacing: the old copy goes first (sidecar, then data), so that
        // no moment — and no crash — pairs the old sidecar with new bytes.
        // A crash after this leaves new data without a sidecar, which
        // start-up removes: the replacement was never acknowledged.
        for other in &store.dirs {
            store.make_room(
                other,
                &key,
                expected.write.is_some(),
                expected.replaces.as_deref(),
            )?;
        }
        fs::rename(&temp.path, &data_path).map_err(io_error)?;
        temp.keep();
        if let Err(e) = fs::rename(&meta_temp.path, &meta_path) {
            let _ = fs::remove_file(&data_path);
            return Err(io_error(e));
        }
        meta_temp.keep();
        if store.fsync {
            sync_dir(parent)?;
        }
        trove_common::crash::point("volume-stored");
        store.blobs.fetch_add(1, Ordering::Relaxed);
        store.blob_bytes.fetch_add(meta.size, Ordering::Relaxed);
        Ok(meta)
    }
}

/// Opens the data file `data` that the sidecar `meta` describes, checking
/// its length (caller holds the key's stripe).
fn open_described(data: &Path, meta: BlobMeta) -> Result<OpenBlob, StoreError> {
    let file = match File::open(data) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len != meta.size {
        return Err(StoreError::Corrupt(format!(
            "{} is {len} bytes but its sidecar says {}",
            data.display(),
            meta.size
        )));
    }
    Ok(OpenBlob { file, meta })
}

/// The id of data dir `dir`, made (durably) if it has none yet.
fn dir_id(dir: &Path, fsync: bool) -> io::Result<String> {
    fs::create_dir_all(dir)?;
    let path = dir.join(ID_FILE);
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{:032x}", rand::random::<u128>());
    let temp = dir.join(format!("{ID_FILE}.tmp"));
    let mut f = File::create(&temp)?;
    f.write_all(format!("{id}\n").as_bytes())?;
    if fsync {
        f.sync_all()?;
    }
    fs::rename(&temp, &path)?;
    if fsync {
        File::open(dir)?.sync_all()?;
    }
    Ok(id)
}

/// The sidecar's path beside a data file: `<h>.meta`.
fn sidecar_of(data: &Path) -> PathBuf {
    let mut meta = data.as_os_str().to_owned();
    meta.push(META_SUFFIX);
    meta.into()
}

/// Reads a sidecar.
fn read_meta(path: &Path) -> Result<BlobMeta, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound),
        Err(e) => return Err(e.into()),
    };
    BlobMeta::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))
}

/// Puts `new` in place of the existing file `target`, atomically: the two
/// are swapped (`renameat2(RENAME_EXCHANGE)`), so `new` then holds the old
/// file for the caller to delete. A plain rename over `target` would do the
/// same, but ext4 (`auto_da_alloc`) then writes the new file out at once,
/// which made every sidecar update several times dearer on these disks.
/// Where the file system cannot swap, or `target` is gone, it renames.
fn replace_file(new: &Path, target: &Path) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(None, new, None, target, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::ENOENT) => fs::rename(new, target),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// fsyncs a directory, so that renames and unlinks in it are durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error)
}

/// `create_dir_all`, then (with fsync) syncs each new dir's parent so the
/// new entries survive a crash.
fn create_dirs_durably(dir: &Path, fsync: bool) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = vec![];
    let mut d = dir;
    while !d.is_dir() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    fs::create_dir_all(dir).map_err(io_error)?;
    if fsync {
        for m in missing {
            if let Some(p) = m.parent() {
                sync_dir(p)?;
            }
        }
    }
    Ok(())
}

fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, io::Error>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn sha256_hex(b: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    }

    fn tmp_is_empty(dir: &Path) -> bool {
        fs::read_dir(dir.join(TMP_DIR)).unwrap().next().is_none()
    }

    const STALL: Duration = Duration::from_secs(5);

    fn len(n: u64) -> Expected {
        Expected {
            len: Some(n),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn writes_reads_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(vec![dir.path().into()], true).unwrap());
        let k = key("/a/b");
        let meta = store
            .write_stream(&k, chunks(&[b"hel", b"lo"]), len(5), STALL)
            .await
            .unwrap();
        assert_eq!(meta.size, 5);
        assert_eq!(meta.md5, "", "volumes do not compute md5");
        // The file is where the hash says, with its sidecar beside it.
        let (data, sidecar) = BlobStore::paths_in(dir.path(), &k);
        assert_eq!(data, dir.path().join(k.blob_relpath()));
        assert_eq!(fs::read(&data).unwrap(), b"hello");
        assert_eq!(BlobMeta::decode(&fs::read(&sidecar).unwrap()).unwrap(), meta);
        assert_eq!(store.counts(), (1, 5));
        assert!(tmp_is_empty(dir.path()));

        let blob = store.open_blob(&k).unwrap();
        assert_eq!(blob.meta, meta);
        // Replacing is atomic and keeps the counts right.
        store
            .write_stream(&k, chunks(&[b"bye"]), Expected::default(), STALL)
            .await
            .unwrap();
        assert_eq!(fs::read(&data).unwrap(), b"bye");
        assert_eq!(store.counts(), (1, 3));

        assert_eq!(blob.meta.state, BlobState::Pending);
        let md5 = "5d41402abc4b2a76b9719d911017c592".to_string();
        let marked = store
            .set_state(&k, BlobState::Live, Some(md5.clone()), None)
            .unwrap();
        assert_eq!((marked.state, marked.md5), (BlobState::Live, md5));
        assert_eq!(store.open_blob(&k).unwrap().meta.state, BlobState::Live);
        assert!(store.verify(&k).unwrap().ok);
        // One flipped byte is found by verify (the sidecar still says "bye").
        fs::write(&data, b"bYe").unwrap();
        let v = store.verify(&k).unwrap();
        assert!(!v.ok);
        assert_eq!(v.meta.sha256, sha256_hex(b"bye"));
        assert_eq!(v.actual_sha256, sha256_hex(b"bYe"));
        assert!(tmp_is_empty(dir.path()));

        assert!(store.delete(&k).unwrap());
        assert!(!store.delete(&k).unwrap());
        assert!(matches!(store.open_blob(&k), Err(StoreError::NotFound)));
        assert_eq!(store.counts(), (0, 0));
    }

    fn write_of(id: &str, replaces: Option<&str>) -> Expected {
        Expected {
            write: Some(id.into()),
            replaces: replaces.map(str::to_string),
            meta: [("content-type".to_string(), format!("text/{id}"))].into(),
            ..Default::default()
        }
    }

    fn read_all(blob: OpenBlob) -> Vec<u8> {
        let mut f = blob.file;
        let mut bytes = vec![];
        io::Read::read_to_end(&mut f, &mut bytes).unwrap();
        bytes
    }

    /// A replace: reads pinned to the old write are served from the copy
    /// kept aside until the new write is confirmed, then told "replaced";
    /// an aborted replace puts the old copy back, metadata included.
    #[tokio::test]
    async fn pinned_reads_follow_a_replace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(vec![dir.path().into()], false).unwrap());
        let k = key("/r");
        store
            .write_stream(&k, chunks(&[b"one"]), write_of("0001", None), STALL)
            .await
            .unwrap();
        // The old write's confirmation never arrived: still pending, but
        // named as the write replaced, so it is kept aside all the same.
        let old = store.open_pinned(&k, &Pin::Write("0001".into())).unwrap();
        assert_eq!(old.meta.meta["content-type"], "text/0001");
        store
            .write_stream(&k, chunks(&[b"two!"]), write_of("0002", Some("0001")), STALL)
            .await
            .unwrap();
        assert_eq!(
            read_all(store.open_pinned(&k, &Pin::Write("0001".into())).unwrap()),
            b"one"
        );
        assert_eq!(
            read_all(store.open_pinned(&k, &Pin::Write("0002".into())).unwrap()),
            b"two!"
        );
        assert_eq!(read_all(store.open_blob(&k).unwrap()), b"two!");
        assert!(matches!(
            store.open_pinned(&k, &Pin::Write("0003".into())),
            Err(StoreError::Replaced)
        ));
        // A value stored before writes had ids is pinned by its bytes.
        let by_sha = |v: &[u8]| Pin::Sha256(sha256_hex(v));
        assert_eq!(read_all(store.open_pinned(&k, &by_sha(b"one")).unwrap()), b"one");
        assert_eq!(
            read_all(store.open_pinned(&k, &by_sha(b"two!")).unwrap()),
            b"two!"
        );
        assert!(matches!(
            store.open_pinned(&k, &by_sha(b"other")),
            Err(StoreError::Replaced)
        ));
        // Aborted: the old copy is back in place, as it was.
        let aborted = store.abort(&k, "0002").unwrap();
        assert!(aborted.restored);
        let back = store.open_pinned(&k, &Pin::Write("0001".into())).unwrap();
        assert_eq!(back.meta, old.meta);
        assert_eq!(read_all(back), b"one");
        assert!(matches!(
            store.open_pinned(&k, &Pin::Write("0002".into())),
            Err(StoreError::Replaced)
        ));

        // Replaced again and confirmed: the old copy goes.
        store
            .write_stream(&k, chunks(&[b"three"]), write_of("0004", Some("0001")), STALL)
            .await
            .unwrap();
        assert_eq!(
            read_all(store.open_pinned(&k, &Pin::Write("0001".into())).unwrap()),
            b"one"
        );
        store.set_state(&k, BlobState::Live, None, Some("0004")).unwrap();
        assert!(matches!(
            store.open_pinned(&k, &Pin::Write("0001".into())),
            Err(StoreError::Replaced)
        ));
        let new = store.open_pinned(&k, &Pin::Write("0004".into())).unwrap();
        assert_eq!(new.meta.meta["content-type"], "text/0004");
        assert_eq!(read_all(new), b"three");
        // Without naming it, a pending copy of another write is not kept.
        store
            .write_stream(&k, chunks(&[b"4"]), write_of("0005", None), STALL)
            .await
            .unwrap();
        store
            .write_stream(&k, chunks(&[b"5"]), write_of("0006", None), STALL)
            .await
            .unwrap();
        assert!(matches!(
            store.open_pinned(&k, &Pin::Write("0005".into())),
            Err(StoreError::Replaced)
        ));
        assert_eq!(store.counts(), (1, 1));
    }

    #[tokio::test]
    async fn empty_blobs_are_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(vec![dir.path().into()], true).unwrap());
        let k = key("/dir/");
        let meta = store.write_stream(&k, chunks(&[]), len(0), STALL).await.unwrap();
        assert_eq!((meta.size, meta.sha256.as_str()), (0, sha256_hex(b"").as_str()));
        assert_eq!(meta.crc32c.as_deref(), Some(""));
        assert!(read_all(store.open_blob(&k).unwrap()).is_empty());
        assert!(store.verify(&k).unwrap().ok);
        assert_eq!(store.counts(), (1, 0));
    }

    #[test]
    fn replace_file_swaps_or_renames() {
        let dir = tempfile::tempdir().unwrap();
        let (new, target) = (dir.path().join("new"), dir.path().join("target"));
        fs::write(&target, b"old").unwrap();
        fs::write(&new, b"new").unwrap();
        replace_file(&new, &target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(fs::read(&new).unwrap(), b"old", "the old file is handed back");
        // No target: a plain rename.
        fs::remove_file(&target).unwrap();
        replace_file(&new, &target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert!(!new.exists());
    }

    #[tokio::test]
    async fn failed_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(vec![dir.path().into()], false).unwrap());
        let k = key("/x");
        let short = store.write_stream(&k, chunks(&[b"abc"]), len(10), STALL).await;
        assert!(matches!(
            short,
            Err(StoreError::LengthMismatch { expected: 10, got: 3 })
        ));
        let long = store
            .write_stream(&k, chunks(&[b"abc", b"def"]), len(4), STALL)
            .await;
        assert!(matches!(long, Err(StoreError::LengthMismatch { .. })));
        let bad_sha = store
            .write_stream(
                &k,
                chunks(&[b"abc"]),
                Expected {
                    sha256: Some([0; 32]),
                    ..Default::default()
                },
                STALL,
            )
            .await;
        assert!(matches!(bad_sha, Err(StoreError::DigestMismatch { .. })));
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::other("connection reset")),
        ]);
        let aborted = store.write_stream(&k, broken, Expected::default(), STALL).await;
        assert!(matches!(aborted, Err(StoreError::BodyAborted(_))));
        let stalled = store
            .write_stream(
                &k,
                futures::stream::pending::<Result<Bytes, io::Error>>(),
                Expected::default(),
                Duration::from_millis(50),
            )
            .await;
        assert!(matches!(stalled, Err(StoreError::Stalled(_))));
        assert!(matches!(store.open_blob(&k), Err(StoreError::NotFound)));
        assert!(tmp_is_empty(dir.path()));
        assert_eq!(store.counts(), (0, 0));
    }

    #[tokio::test]
    async fn several_dirs_list_and_recover() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        let store = Arc::new(BlobStore::open(paths.clone(), false).unwrap());
        for i in 0..20 {
            let k = key(&format!("/k{i}"));
            store
                .write_stream(&k, chunks(&[b"v"]), Expected::default(), STALL)
                .await
                .unwrap();
        }
        // Both dirs got some keys.
        for d in &dirs {
            assert!(fs::read_dir(d.path()).unwrap().count() > 1);
        }
        let (tx, mut rx) = mpsc::channel(100);
        let s = Arc::clone(&store);
        tokio::task::spawn_blocking(move || s.list(tx))
            .await
            .unwrap()
            .unwrap();
        let mut listed = vec![];
        while let Some(m) = rx.recv().await {
            listed.push(m.key);
        }
        listed.sort();
        assert_eq!(listed.len(), 20);

        // A crash leftover: a data file without sidecar, a temp file.
        let orphan = dirs[0].path().join("ab/cd").join("ab".repeat(32));
        fs::create_dir_all(orphan.parent().unwrap()).unwrap();
        fs::write(&orphan, b"junk").unwrap();
        fs::write(dirs[0].path().join("tmp/1.tmp"), b"junk").unwrap();
        drop(store);
        let store = BlobStore::open(paths, false).unwrap();
        assert!(!orphan.exists());
        assert!(tmp_is_empty(dirs[0].path()));
        assert_eq!(store.counts(), (20, 20));
        // A key is found even when the dir list changed order.
        let k = key("/k3");
        assert!(store.open_blob(&k).is_ok());
    }

    #[tokio::test]
    async fn a_new_dir_list_leaves_one_copy() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let (a, b) = (dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf());
        let old = Arc::new(BlobStore::open(vec![a.clone()], false).unwrap());
        let keys: Vec<Key> = (0..8).map(|i| key(&format!("/moved/{i}"))).collect();
        for k in &keys {
            old.write_stream(k, chunks(&[b"old"]), Expected::default(), STALL)
                .await
                .unwrap();
        }
        drop(old);
        // A second disk: some keys now belong there. Rewriting them must
        // not leave the old copy behind, nor must deleting them.
        let store = Arc::new(BlobStore::open(vec![a.clone(), b.clone()], false).unwrap());
        for k in &keys {
            store
                .write_stream(k, chunks(&[b"new"]), Expected::default(), STALL)
                .await
                .unwrap();
            let copies = [&a, &b]
                .iter()
                .filter(|d| d.join(k.blob_relpath()).exists())
                .count();
            assert_eq!(copies, 1, "{k}");
            let mut blob = store.open_blob(k).unwrap();
            let mut bytes = vec![];
            io::Read::read_to_end(&mut blob.file, &mut bytes).unwrap();
            assert_eq!(bytes, b"new");
        }
        assert_eq!(store.counts(), (8, 24));
        for k in &keys {
            assert!(store.delete(k).unwrap());
            assert!(
                matches!(store.open_blob(k), Err(StoreError::NotFound)),
                "{k} came back"
            );
        }
        assert_eq!(store.counts(), (0, 0));
    }

    #[test]
    fn unwritable_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"").unwrap();
        let err = BlobStore::open(vec![file.clone()], false).err().unwrap();
        assert!(format!("{err:#}").contains("cannot create data dir"), "{err:#}");
    }
}
