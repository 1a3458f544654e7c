//! Spare files: the files of deleted small blobs, kept in `tmp/` and
//! written again by the next small write instead of creating a file.
//!
//! Why: on ext4 without a journal (the file system of the machines this
//! was measured on), allocating an inode skips every inode freed in the
//! last one to five minutes, looking each one up in the buffer cache. A
//! volume that creates and deletes thousands of small files a second
//! spent a fifth of its CPU there (`recently_deleted`), and the cost
//! grows with the churn. A spare written again is an inode neither freed
//! nor allocated, which also keeps the allocator's scan short for the
//! directories a fresh volume still creates. Other file systems save the
//! allocation and the unlink.
//!
//! What keeps it safe:
//!
//! - **Nobody holding the old value sees the new bytes.** A GET may
//!   still have a deleted blob open or mapped, sending it. A spare is
//!   reused only when no descriptor or mapping of it is left, in any
//!   process — the kernel's own test: a write lease (`F_SETLEASE`) is
//!   refused while one exists — else it is unlinked like any deleted
//!   blob. Bytes already handed to a socket by `sendfile` may still sit
//!   in its queues as references to the file's cached pages, after the
//!   file was closed: so a spare is emptied (`ftruncate` to 0, which takes
//!   those pages out of the file and leaves them to the socket) before the
//!   new bytes are written into fresh pages, never overwritten in place.
//!   Every read of a blob opens it under its key's stripe, and so happens
//!   the rename that makes the file a spare: once a spare, no read can
//!   reach it.
//! - **No stale metadata.** The new blob's attribute replaces the old
//!   one; a blob whose metadata goes to a sidecar instead has the old
//!   attribute removed ([`super::write`]), so that a lookup, which reads
//!   the attribute first, cannot find the old key's metadata.
//! - **A crash resurrects nothing.** A deleted file becomes a spare only
//!   once its removal from the blob's directory is durable
//!   ([`SetAside::offer`]), so a crash cannot bring the old name back over
//!   new bytes; and only with fsync on — without it, no order on disk is
//!   promised. Spares live in `tmp/`, which start-up empties; a reused one
//!   is renamed into place only after being written, described and
//!   synced, like any new temp file.
//! - **Bounded.** Only files of at most [`SPARE_MAX_LEN`] bytes, reused by
//!   writes announced that small, at most [`SPARES_PER_DIR`] per data dir.

use super::durable::{self, TempFile};
use super::layout::TMP_DIR;
use super::{BlobStore, StoreError};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Deleted blob files at most this large are kept as spares, and writes
/// announced at most this large reuse them (a small value's: what the
/// write path receives whole).
pub(super) const SPARE_MAX_LEN: u64 = super::write::INLINE_WRITE_MAX;
/// Spares kept per data dir; beyond that, deleted files are unlinked.
const SPARES_PER_DIR: usize = 64;

/// One data dir's spare files.
#[derive(Default)]
pub(super) struct Spares {
    files: parking_lot::Mutex<Vec<PathBuf>>,
}

/// A deleted blob's file, renamed into `tmp/`: it becomes a spare with
/// [`SetAside::offer`], once the caller made the removal durable, and is
/// unlinked if dropped instead (the removal failed to become durable).
#[must_use = "offer it once the removal is durable, or drop it to unlink the file"]
pub(super) struct SetAside<'a> {
    spares: &'a Spares,
    path: Option<PathBuf>,
}

impl SetAside<'_> {
    /// Makes the file a spare, for the next small write of its data dir.
    pub(super) fn offer(mut self) {
        if let Some(path) = self.path.take() {
            let mut files = self.spares.files.lock();
            if files.len() < SPARES_PER_DIR {
                files.push(path);
            } else {
                drop(files);
                let _ = fs::remove_file(path);
            }
        }
    }
}

impl Drop for SetAside<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// A file to write a new blob into.
pub(super) struct BlobFile {
    pub temp: TempFile,
    pub file: File,
    /// The file is a spare, emptied: its old attribute is still on it.
    pub reused: bool,
}

impl BlobStore {
    /// Removes the blob file `path` of data dir `dir` as `fs::remove_file`
    /// would (`NotFound` included); `len` is its length when the caller
    /// knows it. A small one is renamed into `tmp/` instead, and handed
    /// back to be [offered](SetAside::offer) as a spare once the caller
    /// made the removal durable. The caller holds the key's stripe.
    pub(super) fn remove_blob_file(
        &self,
        dir: &Path,
        path: &Path,
        len: Option<u64>,
    ) -> io::Result<Option<SetAside<'_>>> {
        let len = match len {
            Some(n) => n,
            None => fs::symlink_metadata(path)?.len(),
        };
        let spares = self.spares_of(dir);
        if self.fsync && len <= SPARE_MAX_LEN && spares.files.lock().len() < SPARES_PER_DIR {
            let name: u128 = rand::random();
            let spare = dir.join(TMP_DIR).join(format!("{name:032x}.spare"));
            match fs::rename(path, &spare) {
                Ok(()) => {
                    return Ok(Some(SetAside {
                        spares,
                        path: Some(spare),
                    }))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                Err(_) => {} // removed below instead
            }
        }
        durable::remove_blob_file(dir, path, Some(len)).map(|()| None)
    }

    /// A file in data dir `dir` for a new blob announced at `len` bytes:
    /// for a small one, a spare nobody holds, emptied; else a new temp
    /// file. Blocking.
    pub(super) fn new_blob_file(&self, dir: &Path, len: Option<u64>) -> Result<BlobFile, StoreError> {
        if len.is_some_and(|n| n <= SPARE_MAX_LEN) {
            let spares = self.spares_of(dir);
            while let Some(path) = spares.files.lock().pop() {
                if let Some(file) = reusable(&path) {
                    return Ok(BlobFile {
                        temp: TempFile { path },
                        file,
                        reused: true,
                    });
                }
                // Still held somewhere (or not to be reused): it goes the
                // way of any deleted blob.
                let _ = fs::remove_file(&path);
            }
        }
        let (temp, file) = TempFile::create(&dir.join(TMP_DIR), ".tmp")?;
        Ok(BlobFile {
            temp,
            file,
            reused: false,
        })
    }

    fn spares_of(&self, dir: &Path) -> &Spares {
        let i = self
            .dirs
            .iter()
            .position(|d| d == dir)
            .expect("a blob's dir is a data dir");
        &self.spares[i]
    }
}

/// The spare at `path` opened for writing and emptied, if no other
/// descriptor or mapping of it exists anywhere; `None` otherwise, or on
/// any error.
fn reusable(path: &Path) -> Option<File> {
    let file = fs::OpenOptions::new().write(true).open(path).ok()?;
    if open_elsewhere(&file) {
        return None;
    }
    // Emptied, not overwritten: pages a socket still holds keep the old
    // bytes, and the new ones go to fresh pages.
    file.set_len(0).ok()?;
    Some(file)
}

/// Whether a descriptor or mapping of `file` (open for writing) other
/// than this one exists, in any process: a write lease is granted only
/// when there is none. It is released at once. Where leases are not to be
/// had (a file system without them, another owner), the answer is yes,
/// to be safe.
fn open_elsewhere(file: &File) -> bool {
    use nix::libc::{c_int, fcntl, F_SETLEASE, F_UNLCK, F_WRLCK, SIGURG};
    /// Linux's `F_SETSIG` (`<fcntl.h>`), which the libc crate leaves out.
    const F_SETSIG: c_int = 10;
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor this function borrows,
    // each taking an int argument. Should another process open the file
    // in the instant the lease is held, the kernel signals this one:
    // SIGURG, ignored by default, rather than SIGIO, which would end it.
    unsafe {
        if fcntl(fd, F_SETSIG, SIGURG) != 0 || fcntl(fd, F_SETLEASE, F_WRLCK) != 0 {
            return true;
        }
        fcntl(fd, F_SETLEASE, F_UNLCK);
    }
    false
}
