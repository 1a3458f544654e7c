//! The write pump: an upload streamed from the socket to a blocking writer
//! thread, checked against what was announced, and committed — made
//! durable and put in place atomically over whatever the key held (see
//! [`super::durable`] and [`super::previous`]).

use super::durable::{put_in_place, sync_file, How, TempFile};
use super::layout::TMP_DIR;
use super::{blocks, io_error, BlobStore, DiskCalls, StoreError};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use trove_common::key::Key;
use trove_common::record::{now_ms, BlobMeta, BlobState, Meta};
use trove_common::xattr;

/// Chunks buffered between the HTTP body and the blocking writer thread.
const WRITE_QUEUE: usize = 16;
/// Received bytes held before they are written to the temp file: the
/// chunks as they came off the socket, written together by one `writev`
/// (no copy into a buffer of our own), once there are this many bytes…
const WRITE_BATCH: usize = 1 << 20;
/// …or this many chunks (Linux's `IOV_MAX`, the most one `writev` takes).
const WRITE_BATCH_CHUNKS: usize = 1024;
/// Values announced at up to this length are received whole before they
/// are written ([`BlobStore::write_small`]).
pub(super) const INLINE_WRITE_MAX: u64 = 64 << 10;

/// An upload's write as its key's writer: forgotten when the upload ends
/// without committing — an error, or the request dropped half-way (the
/// master hung up) — so no stale entry stays behind.
struct Writer<'a> {
    store: &'a BlobStore,
    key: &'a Key,
    /// `None` once committed (the commit took it out itself).
    write: Option<String>,
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if let Some(write) = &self.write {
            self.store.forget_writer(self.key, write);
        }
    }
}

impl BlobStore {
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
        // Refused before any byte is read. (A client's body left unread is
        // read on by the server when dropped, so the client gets the answer.)
        let disk = self.disk_for_writing(key)?;
        let mut writer = Writer {
            store: self,
            key,
            write: expected.write.clone(),
        };
        let result = if expected.len.is_some_and(|n| n <= INLINE_WRITE_MAX) {
            self.write_small(key, body, expected, disk, stall).await
        } else {
            self.write_streamed(key, body, expected, disk, stall).await
        };
        if result.is_ok() {
            writer.write = None;
        }
        result
    }

    /// A value announced as small: received whole (at most
    /// [`INLINE_WRITE_MAX`] bytes), then written and committed in one
    /// short call (see [`BlobStore::short_call`]): without fsync, often on
    /// this thread; else one hand-off to the blocking pool instead of one
    /// per chunk and one for the end.
    async fn write_small<S, E>(
        self: &Arc<Self>,
        key: &Key,
        body: S,
        expected: Expected,
        disk: Arc<DiskCalls>,
        stall: Duration,
    ) -> Result<BlobMeta, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        futures::pin_mut!(body);
        let mut value = Vec::with_capacity(expected.len.unwrap_or(0) as usize);
        let mut received = 0;
        while let Some(chunk) = next_chunk(&mut body, expected.len, &mut received, stall).await? {
            value.extend_from_slice(&chunk);
        }
        let key = key.clone();
        self.short_call(move |store| {
            let mut w = store.begin_write(&key, &expected, disk)?;
            w.write(Bytes::from(value))?;
            w.commit(expected)
        })
        .await?
    }

    /// Any other value: streamed from the socket to a writer on a blocking
    /// thread, [`WRITE_QUEUE`] chunks at most in between.
    async fn write_streamed<S, E>(
        self: &Arc<Self>,
        key: &Key,
        body: S,
        expected: Expected,
        disk: Arc<DiskCalls>,
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
        // The disk work (hashing, write, fsync, rename) runs on a blocking
        // thread; this task only moves chunks from the socket to it.
        let writer = tokio::task::spawn_blocking(move || {
            let mut w = store.begin_write(&key_owned, &expected, disk)?;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    WriteMsg::Data(chunk) => w.write(chunk)?,
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
            match next_chunk(&mut body, announced_len, &mut received, stall).await {
                Err(e) => break Err(e),
                Ok(None) => break Ok(()),
                Ok(Some(chunk)) => {
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
        match outcome {
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
        }
    }

    /// Starts the upload `expected` announces: registers its write, opens
    /// its temp file. The writer hashes the value's sha256 as well as its
    /// block CRC32Cs when one is announced to check or asked for. Its
    /// calls to the disk are timed as writes to `disk`, the key's home
    /// dir's.
    fn begin_write(
        &self,
        key: &Key,
        expected: &Expected,
        disk: Arc<DiskCalls>,
    ) -> Result<BlobWriter<'_>, StoreError> {
        let hash_sha256 = expected.hash_sha256 || expected.sha256.is_some();
        if let Some(write) = expected.write.as_deref() {
            if self.was_aborted(key, write) {
                return Err(StoreError::Superseded(write.to_string()));
            }
            let mut writers = self.writers.lock();
            // Write ids grow with time: an older upload that starts late
            // (delayed in a network or a frozen volume) must not take the
            // key from a newer one.
            if writers.get(key.as_str()).is_some_and(|w| w.as_str() > write) {
                return Err(StoreError::Superseded(write.to_string()));
            }
            writers.insert(key.as_str().to_string(), write.to_string());
        }
        let dir = self.home_dir(key).to_path_buf();
        let timed = disk.buffered_write(0);
        let (temp, file) = TempFile::create(&dir.join(TMP_DIR), ".tmp").map_err(|e| match e {
            StoreError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => StoreError::DirGone {
                dir: dir.display().to_string(),
            },
            e => e,
        })?;
        drop(timed);
        Ok(BlobWriter {
            store: self,
            key: key.clone(),
            dir,
            disk,
            file,
            temp,
            sha256: hash_sha256.then(Sha256::new),
            blocks: blocks::BlockSums::default(),
            batch: Vec::new(),
            batch_len: 0,
        })
    }
}

/// The next chunk of an upload's body, or `None` at its end; waits at most
/// `stall`, and fails as soon as more than the announced length arrived.
async fn next_chunk<S, E>(
    body: &mut std::pin::Pin<&mut S>,
    announced: Option<u64>,
    received: &mut u64,
    stall: Duration,
) -> Result<Option<Bytes>, StoreError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(stall, body.next()).await {
        Err(_) => Err(StoreError::Stalled(stall)),
        Ok(None) => Ok(None),
        Ok(Some(Err(e))) => Err(StoreError::BodyAborted(e.to_string())),
        Ok(Some(Ok(chunk))) => {
            *received += chunk.len() as u64;
            match announced.filter(|n| *received > *n) {
                Some(len) => Err(StoreError::LengthMismatch {
                    expected: len,
                    got: *received,
                }),
                None => Ok(Some(chunk)),
            }
        }
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
    /// The announced sha256 (`Key-Sha256`, or the record's for a pull),
    /// checked (so hashed) when given.
    pub sha256: Option<[u8; 32]>,
    /// Hash the value's sha256 even when none is announced: for a value
    /// the master does not see go by (a compose). A master PUT is checked
    /// by the CRC32C of its transfer, which the master compares with its
    /// own, and its sha256 arrives with the confirming mark.
    pub hash_sha256: bool,
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
    /// For a pull: the value's time as the master's record has it (Unix
    /// ms), which the copy keeps, so that a copy made by a repair or a
    /// rebalance does not change the value's `Last-Modified` (nor what a
    /// rebuild finds). Otherwise the copy's own commit time, until the
    /// master's mark brings the record's.
    pub created: Option<u64>,
}

/// One upload in progress, on a blocking thread.
struct BlobWriter<'a> {
    store: &'a BlobStore,
    key: Key,
    dir: PathBuf,
    /// The dir's disk calls, which time this upload's.
    disk: Arc<DiskCalls>,
    file: File,
    temp: TempFile,
    /// The value's sha256, when this upload hashes one.
    sha256: Option<Sha256>,
    /// Each block's CRC32C, and the size so far: the one pass over the
    /// bytes that every upload makes.
    blocks: blocks::BlockSums,
    /// Chunks received and not yet written (see [`WRITE_BATCH`]).
    batch: Vec<Bytes>,
    batch_len: usize,
}

impl BlobWriter<'_> {
    fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(sha256) = self.sha256.as_mut() {
            sha256.update(&chunk);
        }
        self.blocks.update(&chunk);
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= WRITE_BATCH || self.batch.len() >= WRITE_BATCH_CHUNKS {
            self.write_batch()?;
        }
        Ok(())
    }

    /// Writes the chunks held so far to the temp file.
    fn write_batch(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let _timed = self.disk.buffered_write(self.batch_len as u64);
        write_all_vectored(&self.file, &self.batch).map_err(io_error)?;
        self.batch.clear();
        self.batch_len = 0;
        Ok(())
    }

    /// Verifies, makes durable, and renames into place.
    fn commit(mut self, expected: Expected) -> Result<BlobMeta, StoreError> {
        self.write_batch()?;
        // Its fsync may write every byte of the value.
        let syncing = self.disk.write(self.blocks.size());
        let BlobWriter {
            store,
            key,
            dir,
            disk,
            file,
            temp,
            sha256,
            blocks,
            ..
        } = self;
        let size = blocks.size();
        let sha256: Option<[u8; 32]> = sha256.map(|h| h.finalize().into());
        if let Some(len) = expected.len.filter(|n| *n != size) {
            return Err(StoreError::LengthMismatch {
                expected: len,
                got: size,
            });
        }
        let sha256_hex = sha256.map(hex::encode).unwrap_or_default();
        if let Some(sha) = expected.sha256.filter(|s| Some(*s) != sha256) {
            return Err(StoreError::DigestMismatch {
                expected: hex::encode(sha),
                got: sha256_hex,
            });
        }
        let meta = BlobMeta {
            key: key.as_str().to_string(),
            size,
            sha256: sha256_hex,
            md5: expected.md5.unwrap_or_default(),
            created: expected.created.unwrap_or_else(now_ms),
            state: expected.state,
            damaged: false,
            write: expected.write.clone().or(expected.copy_of.clone()),
            crc32c: Some(blocks.finish()),
            meta: expected.meta.clone(),
        };
        // The metadata goes into the data file's attribute when it fits
        // (one file per blob, appearing with its metadata in one rename),
        // else into a sidecar renamed in after the data.
        let encoded = meta.encode();
        let sidecar = if store.xattrs && encoded.len() <= xattr::META_ATTR_MAX {
            xattr::set(&file, &encoded).map_err(io_error)?;
            None
        } else {
            Some(TempFile::with_bytes(
                &dir.join(TMP_DIR),
                ".meta.tmp",
                &encoded,
                store.fsync,
            )?)
        };
        // The bytes and attribute must be durable before the rename. With
        // `--shared-sync` a small value shares one sync with concurrent
        // writers ([`super::group`]); otherwise, or for a large value (so
        // that small writes are not held behind its megabytes), the file
        // has its own fsync.
        let shared_sync = store.shares_sync(size);
        if shared_sync {
            drop(file);
            store.commit(super::Durable::File(&temp.path))?;
        } else {
            sync_file(&file, store.fsync)?;
            drop(file);
        }
        trove_common::crash::point("volume-staged");
        drop(syncing);
        let (data_path, meta_path) = BlobStore::paths_in(&dir, &key);
        let parent = data_path.parent().expect("blob has a parent");
        // Timed again once the key's stripe is held: waiting for it is
        // waiting on another write (perhaps in another dir), not on this
        // disk.
        let stripe = store.stripe(&key);
        let _placing = disk.write(0);
        if let Some(write) = &expected.write {
            // Still this key's newest write? (A newer upload or the
            // master's abort took it over while this one was in flight.)
            // What is in place is read first, outside the writers' lock
            // (it is disk work; the key's stripe, held, keeps it as read).
            let newer_in_place = store
                .find(&key)
                .ok()
                .flatten()
                .and_then(|found| found.meta.write)
                .is_some_and(|w| w.as_str() > write.as_str());
            let mut writers = store.writers.lock();
            if writers.get(key.as_str()) != Some(write) || newer_in_place || store.was_aborted(&key, write) {
                return Err(StoreError::Superseded(write.clone()));
            }
            writers.remove(key.as_str());
        }
        // Listed before any file of it is in place (see `listing`).
        store.keys.insert(key.as_bytes())?;
        let at = store
            .dirs
            .iter()
            .position(|d| *d == dir)
            .expect("a data dir of this store");
        store.durable_dirs[at].ensure(parent, &key.hash(), store.fsync)?;
        // Replacing: the old copy goes first (sidecar, then data), so that
        // no moment — and no crash — pairs the old sidecar with new bytes.
        // A crash after this leaves no copy, or new data without a
        // sidecar, which start-up moves aside: the replacement was never
        // acknowledged.
        for other in &store.dirs {
            store.make_room(
                other,
                &key,
                expected.write.is_some(),
                expected.replaces.as_deref(),
            )?;
        }
        // Data first, then its sidecar (if any): a sidecar never describes
        // bytes that are not there.
        let mut files = vec![(temp, data_path.clone(), How::Rename)];
        files.extend(sidecar.map(|s| (s, meta_path, How::Rename)));
        put_in_place(files, store.fsync && !shared_sync)?;
        if meta.state != BlobState::Pending {
            // A confirmed copy (a pull): listed as it is. A master write's
            // is described once its confirming mark arrives.
            store.describe(&key, &data_path, &meta);
        }
        drop(stripe);
        if shared_sync {
            // The directory entry, by a shared sync as well.
            store.commit(super::Durable::DirOf(&data_path))?;
        }
        trove_common::crash::point("volume-stored");
        store.blobs.fetch_add(1, Ordering::Relaxed);
        store.blob_bytes.fetch_add(meta.size, Ordering::Relaxed);
        Ok(meta)
    }
}

/// Writes all of `chunks` to `file`, in as few `writev` calls as it takes.
fn write_all_vectored(mut file: &File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte lands in order, whatever the chunks: more of them than
    /// one `writev` takes, empty ones, one larger than a batch.
    #[test]
    fn vectored_writes_keep_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let file = File::create(&path).unwrap();
        let mut expected = Vec::new();
        let mut chunks = Vec::new();
        for i in 0..3000usize {
            let chunk: Vec<u8> = (0..i % 97).map(|j| (i * 31 + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            chunks.push(Bytes::from(chunk));
        }
        let big: Vec<u8> = (0..3 * WRITE_BATCH).map(|j| (j % 251) as u8).collect();
        expected.extend_from_slice(&big);
        chunks.push(Bytes::from(big));
        write_all_vectored(&file, &chunks).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
