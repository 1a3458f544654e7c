//! Spare files: the files of deleted small blobs, kept in `tmp/` and
//! written over by the next new blob instead of creating a file.
//!
//! Why: on ext4 without a journal (the file system of the machines this
//! was measured on), allocating an inode skips every inode freed in the
//! last one to five minutes, looking each one up in the buffer cache. A
//! volume that creates and deletes thousands of small files a second
//! spent a fifth of its CPU there (`recently_deleted`), and the cost
//! grows with the churn. A spare written again is an inode neither freed
//! nor allocated, and its blocks are overwritten in place; the scan also
//! stays short for the directories a fresh volume still creates. Other
//! file systems save the allocation and the unlink.
//!
//! What keeps it safe:
//!
//! - **No reader sees the new bytes.** A GET may still hold a deleted
//!   blob open, sending it. A spare is written over only when nobody else
//!   has it open — the kernel's own test: a write lease (`F_SETLEASE`) is
//!   refused while any other descriptor of the file exists — else it is
//!   unlinked like any deleted blob. Every open of a blob's file happens
//!   under its key's stripe, and so does the rename that makes the file a
//!   spare, so once it is a spare no new open can reach it.
//! - **No stale metadata.** The new blob's attribute replaces the old
//!   one; a blob whose metadata goes to a sidecar instead has the old
//!   attribute removed ([`super::write`]), so that a lookup, which reads
//!   the attribute first, cannot find the old key's metadata.
//! - **Nothing survives a crash.** Spares live in `tmp/`, which start-up
//!   empties; a spare is renamed into place only after being written,
//!   synced and described, exactly as a new temp file would be.
//! - **Bounded.** Only blobs of at most [`SPARE_MAX_LEN`] bytes, at most
//!   [`SPARES_PER_DIR`] per data dir: a few MiB of disk held back.

use super::durable::{self, TempFile};
use super::layout::TMP_DIR;
use super::{io_error, BlobStore, StoreError};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Deleted blob files at most this large are kept as spares (a small
/// value's: what the write path receives whole).
pub(super) const SPARE_MAX_LEN: u64 = super::write::INLINE_WRITE_MAX;
/// Spares kept per data dir; beyond that, deleted files are unlinked.
const SPARES_PER_DIR: usize = 64;

/// One data dir's spare files.
#[derive(Default)]
pub(super) struct Spares {
    files: parking_lot::Mutex<Vec<Spare>>,
}

struct Spare {
    path: PathBuf,
    len: u64,
}

/// A file to write a new blob into.
pub(super) struct BlobFile {
    pub temp: TempFile,
    pub file: File,
    /// The length of the spare being written over (`None` for a new
    /// file): what is left of it past the new bytes must be cut off, and
    /// its old attribute must not outlive it.
    pub overwrites: Option<u64>,
}

impl BlobStore {
    /// Removes the blob file `path` of data dir `dir` as `fs::remove_file`
    /// would (`NotFound` included), keeping it as a spare when it is
    /// small and there is room; `len` is its length when the caller
    /// knows it. The caller holds the key's stripe.
    pub(super) fn remove_blob_file(&self, dir: &Path, path: &Path, len: Option<u64>) -> io::Result<()> {
        let len = match len {
            Some(n) => n,
            None => fs::symlink_metadata(path)?.len(),
        };
        if len <= SPARE_MAX_LEN {
            let spares = self.spares_of(dir);
            let mut files = spares.files.lock();
            if files.len() < SPARES_PER_DIR {
                let name: u128 = rand::random();
                let spare = dir.join(TMP_DIR).join(format!("{name:032x}.spare"));
                match fs::rename(path, &spare) {
                    Ok(()) => {
                        files.push(Spare { path: spare, len });
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                    Err(_) => {} // removed below instead
                }
            }
        }
        durable::remove_blob_file(dir, path, Some(len))
    }

    /// A file in data dir `dir` for a new blob: a spare nobody holds open,
    /// else a new temp file. Blocking.
    pub(super) fn new_blob_file(&self, dir: &Path) -> Result<BlobFile, StoreError> {
        let spares = self.spares_of(dir);
        loop {
            let Some(spare) = spares.files.lock().pop() else {
                break;
            };
            match fs::OpenOptions::new().write(true).open(&spare.path) {
                Ok(file) if !open_elsewhere(&file) => {
                    return Ok(BlobFile {
                        temp: TempFile { path: spare.path },
                        file,
                        overwrites: Some(spare.len),
                    });
                }
                // Still being read (or not to be reused): it goes the way
                // of any deleted blob.
                _ => {
                    let _ = fs::remove_file(&spare.path);
                }
            }
        }
        let (temp, file) = TempFile::create(&dir.join(TMP_DIR), ".tmp")?;
        Ok(BlobFile {
            temp,
            file,
            overwrites: None,
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

/// Whether a descriptor of `file` (open for writing) other than this one
/// exists, in any process: a write lease is granted only when there is
/// none. It is released at once. Where leases are not to be had (a file
/// system without them, another owner), the answer is yes, to be safe.
fn open_elsewhere(file: &File) -> bool {
    use nix::libc::{fcntl, F_SETLEASE, F_UNLCK, F_WRLCK};
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor this function borrows;
    // F_SETLEASE takes an int argument.
    unsafe {
        if fcntl(fd, F_SETLEASE, F_WRLCK) != 0 {
            return true;
        }
        fcntl(fd, F_SETLEASE, F_UNLCK);
    }
    false
}

/// What a spare left behind when a new blob of `len` bytes was written
/// over it: cuts the file to `len` and, when the new metadata goes to a
/// sidecar (`attr_replaced` false), removes the old attribute.
pub(super) fn settle_overwrite(
    file: &File,
    spare_len: u64,
    len: u64,
    attr_replaced: bool,
) -> Result<(), StoreError> {
    if spare_len > len {
        file.set_len(len).map_err(io_error)?;
    }
    if !attr_replaced {
        trove_common::xattr::remove(file).map_err(io_error)?;
    }
    Ok(())
}
