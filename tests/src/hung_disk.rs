//! A disk that hangs on command: one file's bytes served through FUSE and
//! held back while the test says so, the way a read from a failing or
//! unreachable disk never returns.
//!
//! [`HungFile::over`] mounts a one-file FUSE file system (the `fuser`
//! crate, which mounts `/dev/fuse` itself: it needs root, as CI has) and
//! bind-mounts its file over a blob the volume already stored. The FUSE
//! file answers with the blob's size, bytes and extended attributes (the
//! volume's metadata), so the volume finds and opens it as before; only
//! reads of its bytes wait while [`HungFile::hang`] is in effect (and
//! reads of its extended attributes too, after [`HungFile::hang_metadata`])
//! — and
//! since the mount is new, none of them is in the page cache. A memory map
//! of it faults into FUSE `read`s, so a thread that touches the mapped
//! bytes blocks exactly as on a hung disk.
//!
//! Dropping it lets every waiting read go, then detaches both mounts.

use crate::run_tool;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, OpenFlags, ReplyAttr,
    ReplyData, ReplyEntry, ReplyOpen, ReplyXattr, Request,
};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// The name of the one file, in the FUSE file system's root.
const NAME: &str = "blob";
const FILE: INodeNo = INodeNo(2);
/// Attributes are not cached by the kernel: every look is an answer.
const TTL: Duration = Duration::ZERO;

/// A read held back, to be answered on release.
enum Held {
    /// Of the file's bytes.
    Bytes {
        offset: u64,
        size: u32,
        reply: ReplyData,
    },
    /// Of an extended attribute (its value, or the list of names): the
    /// answer it will get.
    Xattr {
        value: Option<Vec<u8>>,
        size: u32,
        reply: ReplyXattr,
    },
}

/// What is held back.
#[derive(Default, Clone, Copy)]
struct Hang {
    bytes: bool,
    metadata: bool,
}

/// The file's bytes, and the reads held back while it hangs. A held read
/// parks its reply here rather than a FUSE thread, so however many reads
/// the kernel sends, look-ups and opens are still answered.
struct Bytes {
    file: File,
    size: u64,
    /// What reads are held, and those held.
    hung: Mutex<(Hang, Vec<Held>)>,
}

impl Bytes {
    fn answer(&self, offset: u64, size: u32, reply: ReplyData) {
        let len = (size as u64).min(self.size.saturating_sub(offset)) as usize;
        let mut buf = vec![0; len];
        match self.file.read_exact_at(&mut buf, offset) {
            Ok(()) => reply.data(&buf),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn set(&self, hang: Hang) {
        let held = {
            let mut hung = self.hung.lock().unwrap();
            hung.0 = hang;
            if hang.bytes || hang.metadata {
                return;
            }
            std::mem::take(&mut hung.1)
        };
        for h in held {
            match h {
                Held::Bytes { offset, size, reply } => self.answer(offset, size, reply),
                Held::Xattr { value, size, reply } => xattr_reply(value, size, reply),
            }
        }
    }

    /// Holds an extended-attribute read back if metadata hangs, else
    /// answers it.
    fn xattr(&self, value: Option<Vec<u8>>, size: u32, reply: ReplyXattr) {
        let mut hung = self.hung.lock().unwrap();
        if hung.0.metadata {
            hung.1.push(Held::Xattr { value, size, reply });
            return;
        }
        drop(hung);
        xattr_reply(value, size, reply);
    }
}

/// The FUSE side: a root directory holding one read-only file.
struct OneFile {
    bytes: Arc<Bytes>,
    /// The owner of the file it stands for (the volume reads its own).
    owner: (u32, u32),
    attrs: Vec<(OsString, Vec<u8>)>,
}

impl OneFile {
    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let (kind, size, perm, nlink) = match ino {
            INodeNo::ROOT => (FileType::Directory, 0, 0o755, 2),
            FILE => (FileType::RegularFile, self.bytes.size, 0o644, 1),
            _ => return None,
        };
        let (uid, gid) = self.owner;
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid,
            gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        })
    }
}

/// Answers an extended-attribute call the way the kernel expects: the
/// length when asked for it (`size` 0), else the bytes if they fit; no
/// such attribute when `value` is `None`.
fn xattr_reply(value: Option<Vec<u8>>, size: u32, reply: ReplyXattr) {
    let Some(value) = value else {
        return reply.error(Errno::NO_XATTR);
    };
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(&value);
    }
}

impl Filesystem for OneFile {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self
            .attr(FILE)
            .filter(|_| parent == INodeNo::ROOT && name == NAME)
        {
            Some(attr) => reply.entry(&TTL, &attr, fuser::Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Keep what is cached: otherwise each open waits for the page
        // being read to drop it, and the open, not the read, would hang
        // (as it does not on a real disk).
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino != FILE {
            return reply.error(Errno::ENOENT);
        }
        let mut hung = self.bytes.hung.lock().unwrap();
        if hung.0.bytes {
            hung.1.push(Held::Bytes { offset, size, reply });
            return;
        }
        drop(hung);
        self.bytes.answer(offset, size, reply);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = self.attrs.iter().find(|(n, _)| ino == FILE && n == name);
        self.bytes.xattr(value.map(|(_, v)| v.clone()), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut names = Vec::new();
        for (name, _) in self.attrs.iter().filter(|_| ino == FILE) {
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        self.bytes.xattr(Some(names), size, reply);
    }
}

/// A file whose reads hang on command, mounted over a real one.
pub struct HungFile {
    bytes: Arc<Bytes>,
    target: PathBuf,
    session: Option<fuser::BackgroundSession>,
    _mountpoint: tempfile::TempDir,
}

impl HungFile {
    /// Serves `path`'s bytes and extended attributes from a FUSE file
    /// bind-mounted over `path`. Fails if this process cannot mount
    /// (it needs root and `/dev/fuse`).
    pub fn over(path: &Path) -> io::Result<HungFile> {
        let file = File::open(path)?;
        let stat = file.metadata()?;
        let attrs = xattrs(path)?;
        let bytes = Arc::new(Bytes {
            file,
            size: stat.len(),
            hung: Mutex::default(),
        });
        let mountpoint = tempfile::tempdir()?;
        let fs = OneFile {
            bytes: Arc::clone(&bytes),
            owner: (stat.uid(), stat.gid()),
            attrs,
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::RO,
            fuser::MountOption::FSName("trove-hung-disk".into()),
        ];
        config.n_threads = Some(2);
        let session = fuser::spawn_mount(fs, mountpoint.path(), &config)?;
        let source = mountpoint.path().join(NAME);
        // On failure, dropping the session unmounts the FUSE file system.
        run_tool(
            "mount",
            &[OsStr::new("--bind"), source.as_os_str(), path.as_os_str()],
        )?;
        Ok(HungFile {
            bytes,
            target: path.to_path_buf(),
            session: Some(session),
            _mountpoint: mountpoint,
        })
    }

    /// From now on, reads of the file's bytes wait.
    pub fn hang(&self) {
        self.bytes.set(Hang {
            bytes: true,
            metadata: false,
        });
    }

    /// From now on, reads of the file's bytes and of its extended
    /// attributes (the volume's metadata) wait.
    pub fn hang_metadata(&self) {
        self.bytes.set(Hang {
            bytes: true,
            metadata: true,
        });
    }

    /// Lets every waiting read go, and the next ones through.
    pub fn release(&self) {
        self.bytes.set(Hang::default());
    }

    /// Reads waiting for [`HungFile::release`] now.
    pub fn reads_waiting(&self) -> usize {
        self.bytes.hung.lock().unwrap().1.len()
    }
}

impl Drop for HungFile {
    fn drop(&mut self) {
        self.release();
        // Lazily: a process may still hold the file open.
        if let Err(e) = run_tool("umount", &[OsStr::new("-l"), self.target.as_os_str()]) {
            eprintln!("could not unmount {}: {e}", self.target.display());
        }
        drop(self.session.take());
    }
}

/// Every extended attribute of `path`, with its value.
fn xattrs(path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut attrs = Vec::new();
    if let Some(value) = trove_common::xattr::get(path)? {
        attrs.push((OsString::from(trove_common::xattr::META_ATTR), value));
    }
    Ok(attrs)
}
