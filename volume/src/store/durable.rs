//! Durable writes: the one sequence by which every file the store writes
//! gets into place — blobs, sidecars, a data dir's id.
//!
//! 1. The file is written at a temporary path ([`TempFile`], deleted on
//!    drop, so an error or a cancelled upload leaves nothing behind).
//! 2. Its bytes are fsynced ([`sync_file`]) — outside any lock, since for a
//!    large value this is the slow part.
//! 3. [`put_in_place`] renames it (or swaps it, [`How::Swap`]) over its
//!    target, several files together, and fsyncs their directories once.
//!
//! Metadata changed later is written in place: [`set_attr`] (one
//! `setxattr` on the blob file, then a sync shared with concurrent
//! writers, [`super::group`]) or a sidecar swapped in.
//!
//! A small blob's commit shares those syncs too (see `write.rs`): its
//! bytes and attribute are synced by one group sync before the rename,
//! its directory entry by another after it.
//!
//! With fsync off (`--no-fsync`) the fsyncs are skipped; the renames and
//! attribute changes stay atomic.

use super::{io_error, StoreError};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use trove_common::xattr;

/// Blob files at least this large are unlinked in the background
/// ([`remove_blob_file`]).
const REMOVE_LATER_FROM: u64 = 64 << 20;

/// Removes the blob file `path` of data dir `dir`, as `fs::remove_file`
/// would (`NotFound` included); `len` is its length when the caller
/// already knows it (else one `lstat`). A large one is renamed into the dir's
/// `tmp/` — which start-up empties, so a crash loses nothing — and
/// unlinked there by a background thread: unlinking a file of gigabytes
/// whose pages are still being written back took 0.6–2 s here, several at
/// once longer than the master waits for a volume's answer, and a DELETE
/// should not wait for the disk to forget the bytes.
pub(super) fn remove_blob_file(dir: &Path, path: &Path, len: Option<u64>) -> io::Result<()> {
    let len = match len {
        Some(n) => n,
        None => fs::symlink_metadata(path)?.len(),
    };
    if len >= REMOVE_LATER_FROM {
        let name: u128 = rand::random();
        let trash = dir
            .join(super::layout::TMP_DIR)
            .join(format!("{name:032x}.removed"));
        if fs::rename(path, &trash).is_ok() {
            unlink_later(trash);
            return Ok(());
        }
    }
    fs::remove_file(path)
}

/// Unlinks `path` on the process's one background remover thread.
fn unlink_later(path: PathBuf) {
    static REMOVER: std::sync::OnceLock<Option<std::sync::mpsc::Sender<PathBuf>>> =
        std::sync::OnceLock::new();
    let remover = REMOVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
        let spawned = std::thread::Builder::new()
            .name("blob-remover".into())
            .spawn(move || {
                for path in rx {
                    if let Err(e) = fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove a deleted blob's file; start-up will");
                    }
                }
            });
        spawned.is_ok().then_some(tx)
    });
    match remover {
        Some(tx) => {
            if let Err(unsent) = tx.send(path) {
                let _ = fs::remove_file(unsent.0);
            }
        }
        None => {
            let _ = fs::remove_file(path);
        }
    }
}

/// Deletes its file when dropped, unless [`TempFile::keep`] was called.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
}

impl TempFile {
    /// Creates a new file with a random name and `suffix` in `dir`.
    pub(super) fn create(dir: &Path, suffix: &str) -> Result<(TempFile, File), StoreError> {
        let name: u64 = rand::random();
        let temp = TempFile {
            path: dir.join(format!("{name:016x}{suffix}")),
        };
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp.path)
            .map_err(io_error)?;
        Ok((temp, file))
    }

    /// A new file in `dir` holding `bytes`, fsynced when `fsync`: ready
    /// for [`put_in_place`].
    pub(super) fn with_bytes(
        dir: &Path,
        suffix: &str,
        bytes: &[u8],
        fsync: bool,
    ) -> Result<TempFile, StoreError> {
        let (temp, mut file) = TempFile::create(dir, suffix)?;
        file.write_all(bytes).map_err(io_error)?;
        sync_file(&file, fsync)?;
        Ok(temp)
    }

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

/// fsyncs a file's bytes (when `fsync`).
pub(super) fn sync_file(file: &File, fsync: bool) -> Result<(), StoreError> {
    if fsync {
        file.sync_all().map_err(io_error)?;
    }
    Ok(())
}

/// How a staged file takes its target's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum How {
    /// A rename: the target must not exist, or is overwritten.
    Rename,
    /// The target is swapped with the staged file, whose guard then deletes
    /// the old file (see [`replace_file`]).
    Swap,
}

/// Puts staged (and already synced) files in place, in order, then fsyncs
/// each directory they landed in once (when `fsync`). If one cannot be
/// placed, the ones placed before it are taken back out (renamed files
/// removed, swapped ones swapped back), so that files placed together
/// appear together or not at all — but for a crash, which start-up
/// recovery handles.
pub(super) fn put_in_place(files: Vec<(TempFile, PathBuf, How)>, fsync: bool) -> Result<(), StoreError> {
    let mut placed: Vec<(TempFile, PathBuf, How)> = Vec::with_capacity(files.len());
    for (temp, target, how) in files {
        let moved = match how {
            How::Rename => fs::rename(&temp.path, &target),
            How::Swap => replace_file(&temp.path, &target),
        };
        if let Err(e) = moved {
            for (temp, target, how) in placed.into_iter().rev() {
                match how {
                    How::Rename => {
                        let _ = fs::remove_file(&target);
                    }
                    How::Swap => {
                        let _ = replace_file(&temp.path, &target);
                    }
                }
            }
            return Err(io_error(e));
        }
        placed.push((temp, target, how));
    }
    let mut dirs: Vec<PathBuf> = vec![];
    for (temp, target, how) in placed {
        let dir = target.parent().expect("a placed file has a parent").to_path_buf();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
        match how {
            How::Rename => temp.keep(),
            How::Swap => drop(temp), // deletes the old file, now at the temp path
        }
    }
    if fsync {
        for dir in dirs {
            sync_dir(&dir)?;
        }
    }
    Ok(())
}

/// Puts `new` in place of the existing file `target`, atomically: the two
/// are swapped (`renameat2(RENAME_EXCHANGE)`), so `new` then holds the old
/// file for the caller to delete. A plain rename over `target` would do the
/// same, but ext4 (`auto_da_alloc`) then writes the new file out at once,
/// which made every sidecar update several times dearer on these disks.
/// Where the file system cannot swap, or `target` is gone, it renames.
pub(super) fn replace_file(new: &Path, target: &Path) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(None, new, None, target, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::ENOENT) => fs::rename(new, target),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Sets a blob file's metadata attribute, in place: the second way
/// metadata is written (the first is the attribute set on the temp file
/// before [`put_in_place`]). One `setxattr` replaces the value
/// atomically; the caller makes it durable (`BlobStore::commit`).
pub(super) fn set_attr(data: &Path, value: &[u8]) -> Result<(), StoreError> {
    let file = File::open(data).map_err(io_error)?;
    xattr::set(&file, value).map_err(io_error)
}

/// Removes a blob file's metadata attribute (its metadata moved to a
/// sidecar), durably.
pub(super) fn remove_attr(data: &Path, fsync: bool) -> Result<(), StoreError> {
    let file = File::open(data).map_err(io_error)?;
    xattr::remove(&file).map_err(io_error)?;
    sync_file(&file, fsync)
}

/// fsyncs a directory, so that renames and unlinks in it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error)
}

/// The leaf dirs (`aa/bb`) of one data dir, and their parents (`aa`),
/// that this process has made sure exist durably: one bit each, so a write
/// into a known leaf costs no lookup at all.
pub(super) struct DurableDirs {
    leaves: Box<[AtomicU64]>,
    parents: Box<[AtomicU64]>,
}

impl Default for DurableDirs {
    fn default() -> DurableDirs {
        let words = |bits: usize| (0..bits / 64).map(|_| AtomicU64::new(0)).collect();
        DurableDirs {
            leaves: words(1 << 16),
            parents: words(1 << 8),
        }
    }
}

impl DurableDirs {
    /// Makes sure the leaf dir `leaf` (`<data dir>/aa/bb`, where `aa` and
    /// `bb` are the first two bytes of `hash`, the key's sha256) exists and
    /// that its entry and its parent's are durable, so that a blob renamed
    /// into it needs only the leaf's own sync. Checked once per process
    /// even for dirs that already exist: the process that made one may have
    /// crashed before syncing it. Callers racing on a new leaf may each
    /// create and sync it; each returns only after syncs of its own that
    /// came after the dirs existed, never on the strength of another's
    /// half-done work.
    pub(super) fn ensure(&self, leaf: &Path, hash: &[u8; 32], fsync: bool) -> Result<(), StoreError> {
        let leaf_bit = usize::from(u16::from_be_bytes([hash[0], hash[1]]));
        if is_set(&self.leaves, leaf_bit) {
            return Ok(());
        }
        fs::create_dir_all(leaf).map_err(io_error)?;
        if fsync {
            let parent = leaf.parent().expect("a leaf dir has a parent");
            let parent_bit = usize::from(hash[0]);
            if !is_set(&self.parents, parent_bit) {
                sync_dir(parent.parent().expect("a leaf dir's parent is in a data dir"))?;
                set(&self.parents, parent_bit);
            }
            sync_dir(parent)?;
        }
        set(&self.leaves, leaf_bit);
        Ok(())
    }
}

fn is_set(words: &[AtomicU64], bit: usize) -> bool {
    words[bit / 64].load(Ordering::Acquire) & (1 << (bit % 64)) != 0
}

fn set(words: &[AtomicU64], bit: usize) {
    words[bit / 64].fetch_or(1 << (bit % 64), Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn leaf_dirs_are_made_once_per_process_and_then_known() {
        let d = tempfile::tempdir().unwrap();
        let dirs = DurableDirs::default();
        let hash = [0xab; 32];
        let leaf = d.path().join("ab/ab");
        dirs.ensure(&leaf, &hash, true).unwrap();
        assert!(leaf.is_dir());
        // Known now: not looked at again (so not made again either).
        fs::remove_dir(&leaf).unwrap();
        dirs.ensure(&leaf, &hash, true).unwrap();
        assert!(!leaf.is_dir());
        // Another leaf under the same parent, already there (made by an
        // earlier process): taken as it is, and known from then on.
        let sibling = d.path().join("ab/cd");
        fs::create_dir_all(&sibling).unwrap();
        let mut other = hash;
        other[1] = 0xcd;
        dirs.ensure(&sibling, &other, true).unwrap();
        assert!(sibling.is_dir());
        // Another store's bits are its own.
        DurableDirs::default().ensure(&leaf, &hash, false).unwrap();
        assert!(leaf.is_dir());
    }

    #[test]
    fn a_large_blob_file_leaves_at_once_and_is_unlinked_from_tmp_later() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join(super::super::layout::TMP_DIR);
        fs::create_dir_all(&tmp).unwrap();
        let (small, large) = (d.path().join("small"), d.path().join("large"));
        fs::write(&small, b"bytes").unwrap();
        // Sparse: as large as the threshold without writing it.
        File::create(&large).unwrap().set_len(REMOVE_LATER_FROM).unwrap();

        remove_blob_file(d.path(), &small, None).unwrap();
        remove_blob_file(d.path(), &large, None).unwrap();
        assert!(!small.exists() && !large.exists());
        let missing = remove_blob_file(d.path(), &large, None).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);

        // The large one went through tmp/, and the remover empties it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while fs::read_dir(&tmp).unwrap().count() > 0 {
            assert!(Instant::now() < deadline, "tmp/ still holds the removed file");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
