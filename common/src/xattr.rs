//! A blob's metadata as an extended attribute of its data file
//! (`user.trove.meta`, the same JSON as a `.meta` sidecar): written on the
//! temp file before it is renamed into place, so the bytes and their
//! metadata appear together in one rename, and changed in place (one
//! `setxattr`) when the master confirms the write. `getfattr -n
//! user.trove.meta --only-values <file>` shows it.
//!
//! Thin wrappers over the Linux calls (libc, through nix); the volume
//! decides where to use them, the tests read what it wrote.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The attribute holding a blob's metadata.
pub const META_ATTR: &str = "user.trove.meta";

/// The largest metadata kept in the attribute; larger (a value of
/// hundreds of MiB has that many block checksums, or one with kilobytes of
/// user metadata) goes to a `.meta` sidecar file. ext4 keeps all of a
/// file's attributes in one 4 KiB block.
pub const META_ATTR_MAX: usize = 3072;

/// The largest metadata an attribute is changed to in place (a mark adds
/// the md5 and sha256 to what was written, under [`META_ATTR_MAX`]); past
/// it the metadata moves to a sidecar.
pub const META_ATTR_LIMIT: usize = 3840;

fn name() -> CString {
    CString::new(META_ATTR).expect("no NUL")
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path with a NUL byte"))
}

/// The metadata attribute of the file at `path`: `None` when it has none
/// (or the file system has no user attributes); `NotFound` when there is
/// no file.
pub fn get(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let (p, n) = (c_path(path)?, name());
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: both strings are NUL-terminated and live across the
        // call; `buf` is valid for writes of `buf.len()` bytes.
        let got = unsafe { nix::libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(nix::libc::ENODATA) | Some(nix::libc::EOPNOTSUPP) => return Ok(None),
            Some(nix::libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
            _ => return Err(e),
        }
    }
}

/// Sets the metadata attribute of an open file.
pub fn set(file: &File, value: &[u8]) -> io::Result<()> {
    let n = name();
    // SAFETY: `n` is NUL-terminated and `value` valid for reads of its
    // length, both across the call; the descriptor is open.
    let r = unsafe {
        nix::libc::fsetxattr(
            file.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the metadata attribute of the file at `path` (a test's way to
/// damage it).
pub fn set_path(path: &Path, value: &[u8]) -> io::Result<()> {
    set(&std::fs::OpenOptions::new().write(true).open(path)?, value)
}

/// Removes the metadata attribute of an open file (absent is fine).
pub fn remove(file: &File) -> io::Result<()> {
    let n = name();
    // SAFETY: `n` is NUL-terminated across the call; the descriptor is open.
    let r = unsafe { nix::libc::fremovexattr(file.as_raw_fd(), n.as_ptr()) };
    let e = io::Error::last_os_error();
    if r == 0 || e.raw_os_error() == Some(nix::libc::ENODATA) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Whether the file system holding `file` takes user attributes: sets
/// and removes a probe attribute. `Ok(false)` when it does not
/// (`EOPNOTSUPP`); other errors are errors.
pub fn supported(file: &File) -> io::Result<bool> {
    match set(file, b"probe") {
        Ok(()) => remove(file).map(|()| true),
        Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_absent() {
        let dir = tempfile_dir();
        let path = dir.join("f");
        let file = std::fs::File::create(&path).unwrap();
        assert_eq!(get(&path).unwrap(), None);
        if !supported(&file).unwrap() {
            assert!(
                std::env::var("CI").is_err(),
                "the file system of {} has no user attributes",
                dir.display()
            );
            return;
        }
        let big = vec![b'x'; META_ATTR_MAX];
        set(&file, &big).unwrap();
        assert_eq!(get(&path).unwrap(), Some(big));
        set(&file, b"{}").unwrap();
        assert_eq!(get(&path).unwrap().as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            get(&dir.join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("trove-xattr-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
