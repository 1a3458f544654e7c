//! The value a master write replaces, kept until that write is settled.
//!
//! A key that was unlinked may be written again, and a live one replaced
//! (`Trove-Replace`). Until the master confirms the new value (`mark …
//! state=live&write=W`), the confirmed copy it replaces is kept aside as
//! `<h>.prev` (data) and `<h>.prev.meta` (sidecar), in the data dir where
//! it was. Readers the master sent to the old value (`?write=<old id>`)
//! are served from there meanwhile (`BlobStore::open_write`). If the write
//! fails, the master aborts it (`POST /-/abort?key=K&write=W`): the new
//! blob is removed and the old copy put back, so a failed write leaves the
//! previous state exactly as it was — bytes, sidecar, metadata.
//!
//! Every move is a rename of the data, then of the sidecar; start-up
//! ([`recover`]) finishes a move a crash interrupted, so a copy is never
//! lost between its two places.

use super::durable::sync_dir;
use super::layout::{has_meta, meta_in_attr, meta_presence, orphan, read_meta, sidecar_of};
use super::{io_error, BlobStore, StoreError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use trove_common::key::Key;
use trove_common::protocol::Aborted;
use trove_common::record::{BlobMeta, BlobState};

/// Suffix of a previous value's data file (its sidecar adds `.meta`).
const PREV_SUFFIX: &str = ".prev";
/// How many aborted writes a volume remembers. An upload is refused if its
/// abort is among them; aborts of uploads still in flight are rare (a
/// frozen or slow volume), so a few thousand cover any real backlog.
const ABORTS_KEPT: usize = 4096;

/// `(data, sidecar)` of the previous value beside the blob file `data`.
pub(super) fn prev_of(data: &Path) -> (PathBuf, PathBuf) {
    let mut prev = data.as_os_str().to_owned();
    prev.push(PREV_SUFFIX);
    let prev = PathBuf::from(prev);
    let meta = sidecar_of(&prev);
    (prev, meta)
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// Finishes a move a crash interrupted, for the blob file `data` (run at
/// start-up, before anything is served). A copy whose metadata is in its
/// file's attribute moves in one rename, and cannot be half-moved. A
/// sidecar copy moves data first, then sidecar, so a half-done move is
/// recognised by a data file and a sidecar in different places:
///
/// - setting aside: `<h>.prev` without its sidecar, `<h>.meta` without its
///   data → the sidecar follows its data;
/// - putting back: `<h>` without its sidecar, `<h>.prev.meta` without its
///   data → the same, the other way.
///
/// A previous value beside a confirmed blob is one a crash kept from being
/// dropped; it goes. Anything else half-present is a leftover and is
/// removed.
pub(super) fn recover(data: &Path) {
    let meta = sidecar_of(data);
    let (prev, prev_meta) = prev_of(data);
    let finish = |from: &Path, to: &Path| {
        tracing::warn!(from = %from.display(), to = %to.display(), "finishing a move interrupted by a crash");
        if let Err(e) = fs::rename(from, to) {
            tracing::error!(path = %from.display(), error = %e, "cannot finish an interrupted move");
        }
    };
    match (exists(data), exists(&meta), exists(&prev), exists(&prev_meta)) {
        (false, true, true, false) if !meta_in_attr(&prev) => finish(&meta, &prev_meta),
        (true, false, false, true) if !meta_in_attr(data) => finish(&prev_meta, &meta),
        _ => {}
    }
    // A confirmed blob in place: the write that set the previous value
    // aside was confirmed, and the crash came before it was dropped.
    let confirmed = || read_meta(data).is_ok_and(|m| m.state != BlobState::Pending);
    if exists(&prev) && has_meta(&prev) && confirmed() {
        tracing::info!(path = %prev.display(), "dropping the previous value of a confirmed write");
        let _ = fs::remove_file(&prev_meta);
        let _ = fs::remove_file(&prev);
    }
    match (exists(&prev), exists(&prev_meta)) {
        (true, _) if matches!(meta_presence(&prev), Ok(false)) => orphan(&prev),
        (false, true) => {
            tracing::warn!(path = %prev_meta.display(), "removing a previous value's sidecar without data");
            let _ = fs::remove_file(&prev_meta);
        }
        _ => {}
    }
}

/// What `GET /-/blobs` and `GET /-/listing` report for the blob file
/// `data`, with the data file it describes: the blob, unless it is an
/// unconfirmed write over a previous value — then the previous value,
/// which is what the volume holds for certain. `None` when there is
/// neither.
pub(super) fn listed(data: &Path) -> Result<Option<(BlobMeta, PathBuf)>, StoreError> {
    let (prev, _) = prev_of(data);
    let previous = || match read_meta(&prev) {
        Ok(m) => Ok(Some((m, prev.clone()))),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    };
    match read_meta(data) {
        Ok(m) if m.state == BlobState::Pending => Ok(previous()?.or(Some((m, data.to_path_buf())))),
        Ok(m) => Ok(Some((m, data.to_path_buf()))),
        Err(StoreError::NotFound) => previous(),
        Err(e) => Err(e),
    }
}

/// Moves a copy — its data, then its sidecar if it has one (else its
/// metadata moves with the data, in its attribute).
fn move_copy(from: (&Path, &Path), to: (&Path, &Path)) -> Result<(), StoreError> {
    fs::rename(from.0, to.0).map_err(io_error)?;
    match fs::rename(from.1, to.1) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(e)),
        _ => Ok(()),
    }
}

impl BlobStore {
    /// Clears `dir` for a new copy of `key` (caller holds the key's
    /// stripe). For a master write (`keep_previous`), a confirmed copy is
    /// set aside as the previous value, and so is the copy of the write it
    /// `replaces` (live in the master's record, though its confirmation may
    /// never have arrived); any other unconfirmed copy (a failed write's)
    /// or an unreadable one is removed. For a pull, which stores a
    /// confirmed copy, everything goes.
    pub(super) fn make_room(
        &self,
        dir: &Path,
        key: &Key,
        keep_previous: bool,
        replaces: Option<&str>,
    ) -> Result<(), StoreError> {
        let (data, meta_path) = Self::paths_in(dir, key);
        // A copy whose metadata cannot be read for an I/O error may well
        // be confirmed: the write fails rather than remove it. One whose
        // metadata reads but does not decode is unreadable for good.
        let confirmed = keep_previous
            && exists(&data)
            && match read_meta(&data) {
                Ok(m) => {
                    m.state != BlobState::Pending || (replaces.is_some() && m.write.as_deref() == replaces)
                }
                Err(e @ StoreError::Io(_)) => return Err(e),
                Err(_) => false,
            };
        if !confirmed {
            if !keep_previous {
                self.remove_previous(dir, key)?;
            }
            return self.remove_copy(dir, key).map(|_| ());
        }
        self.remove_previous(dir, key)?;
        let size = fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
        let (prev, prev_meta) = prev_of(&data);
        move_copy((&data, &meta_path), (&prev, &prev_meta))?;
        self.blobs.fetch_sub(1, Ordering::Relaxed);
        self.blob_bytes.fetch_sub(size, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the previous value of `key` in `dir`, if any (caller holds
    /// the key's stripe); sidecar first, as for any copy.
    pub(super) fn remove_previous(&self, dir: &Path, key: &Key) -> Result<bool, StoreError> {
        let (data, _) = Self::paths_in(dir, key);
        let (prev, prev_meta) = prev_of(&data);
        let gone = |removed: io::Result<()>| match removed {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(e)),
        };
        // The sidecar (small) first, then the data (perhaps large): a
        // sidecar that cannot go keeps its data.
        let sidecar = gone(fs::remove_file(&prev_meta))?;
        let found = gone(super::durable::remove_blob_file(dir, &prev, None))? || sidecar;
        if found && self.fsync {
            sync_dir(data.parent().expect("blob has a parent"))?;
        }
        Ok(found)
    }

    /// Undoes master write `write` of `key`: its upload, if still in
    /// flight, will be refused; its blob, if stored and unconfirmed, is
    /// removed; the value it replaced is put back. Another write's blob is
    /// never touched. Idempotent. Blocking.
    pub fn abort(&self, key: &Key, write: &str) -> Result<Aborted, StoreError> {
        self.small_write(key, || {
            let _stripe = self.stripe(key);
            let aborted = self.abort_locked(key, write);
            self.forget_if_gone(key);
            aborted
        })
    }

    /// [`BlobStore::abort`] for a caller that holds the key's stripe.
    fn abort_locked(&self, key: &Key, write: &str) -> Result<Aborted, StoreError> {
        self.forget_writer(key, write);
        self.note_aborted(key, write);
        let mut aborted = Aborted::default();
        for dir in &self.dirs {
            let (data, _) = Self::paths_in(dir, key);
            match read_meta(&data) {
                Ok(m) if m.write.as_deref() == Some(write) && m.state == BlobState::Pending => {
                    self.remove_copy(dir, key)?;
                    aborted.removed_bytes = Some(m.size);
                }
                _ => {}
            }
        }
        if self.locate(key).is_some() {
            // A copy is in place (another write's, or a confirmed one): a
            // previous value stays where it is.
            return Ok(aborted);
        }
        for dir in &self.dirs {
            let (data, meta_path) = Self::paths_in(dir, key);
            let (prev, prev_meta) = prev_of(&data);
            if exists(&prev) && has_meta(&prev) {
                let size = fs::metadata(&prev).map(|m| m.len()).unwrap_or(0);
                move_copy((&prev, &prev_meta), (&data, &meta_path))?;
                if self.fsync {
                    sync_dir(data.parent().expect("blob has a parent"))?;
                }
                self.blobs.fetch_add(1, Ordering::Relaxed);
                self.blob_bytes.fetch_add(size, Ordering::Relaxed);
                aborted.restored = true;
                return Ok(aborted);
            }
        }
        Ok(aborted)
    }

    /// Remembers that `write` of `key` was aborted (the most recent
    /// [`ABORTS_KEPT`] aborts), so that an upload of it is refused.
    fn note_aborted(&self, key: &Key, write: &str) {
        let mut aborted = self.aborted.lock();
        if aborted.len() >= ABORTS_KEPT {
            aborted.pop_front();
        }
        aborted.push_back((key.as_str().to_string(), write.to_string()));
    }

    /// Whether `write` of `key` was aborted (recently).
    pub(super) fn was_aborted(&self, key: &Key, write: &str) -> bool {
        let aborted = self.aborted.lock();
        aborted.iter().any(|(k, w)| w == write && k == key.as_str())
    }

    /// Forgets `write` as the key's upload in progress, if it still is
    /// (the upload failed before it could be committed).
    pub(super) fn forget_writer(&self, key: &Key, write: &str) {
        let mut writers = self.writers.lock();
        if writers.get(key.as_str()).is_some_and(|w| w == write) {
            writers.remove(key.as_str());
        }
    }
}
