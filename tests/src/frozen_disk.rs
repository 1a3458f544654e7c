//! A disk that stops taking writes on command: a small ext4 image mounted
//! through a loop device, frozen with `fsfreeze`. While it is frozen,
//! every call that would change the file system — creating a file,
//! writing to one, renaming, setting an attribute, unlinking — waits
//! (uninterruptibly: a process stuck there cannot even be killed) until
//! it is thawed, and reads go on as before. That is how a disk with a
//! full, stuck write cache, or a file system an administrator froze for a
//! snapshot, looks to the volume.
//!
//! It needs root and loop devices, as CI has. Every [`Frozen`] guard
//! thaws when dropped, a panicking test's included, so that the
//! processes waiting on the file system can finish and be stopped:
//! declare it after the servers, so that it is dropped before them.

use crate::run_tool;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

/// An ext4 file system of its own, mounted at a path until dropped.
pub struct LoopDisk {
    mountpoint: PathBuf,
    /// Holds the image file.
    _image_dir: tempfile::TempDir,
}

impl LoopDisk {
    /// Makes an ext4 file system of `mib` MiB (a sparse image: it takes
    /// only what is written) and mounts it at `at` (made if missing). The
    /// master places no writes on a volume with less than `--min-free`
    /// (256 MiB) spare, so a volume's disk needs more. Fails if this process cannot (it needs root and a
    /// free loop device).
    pub fn mount(at: &Path, mib: u64) -> io::Result<LoopDisk> {
        let image_dir = tempfile::tempdir()?;
        let image = image_dir.path().join("disk.img");
        std::fs::File::create(&image)?.set_len(mib << 20)?;
        run_tool(
            "mkfs.ext4",
            &[OsStr::new("-q"), OsStr::new("-F"), image.as_os_str()],
        )?;
        std::fs::create_dir_all(at)?;
        run_tool(
            "mount",
            &[
                OsStr::new("-o"),
                OsStr::new("loop"),
                image.as_os_str(),
                at.as_os_str(),
            ],
        )?;
        Ok(LoopDisk {
            mountpoint: at.to_path_buf(),
            _image_dir: image_dir,
        })
    }

    /// Freezes the file system: writes to it wait until the guard is
    /// dropped.
    pub fn freeze(&self) -> io::Result<Frozen<'_>> {
        run_tool("fsfreeze", &[OsStr::new("--freeze"), self.mountpoint.as_os_str()])?;
        Ok(Frozen { disk: self })
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        // Thawed first, should a guard have been forgotten (an error if
        // it is not frozen, which is the usual case): a frozen file system
        // detached from its path could never be thawed.
        let _ = run_tool(
            "fsfreeze",
            &[OsStr::new("--unfreeze"), self.mountpoint.as_os_str()],
        );
        // Lazily: a process may still hold a file open there. The loop
        // device goes with the last user of the mount.
        if let Err(e) = run_tool("umount", &[OsStr::new("-l"), self.mountpoint.as_os_str()]) {
            eprintln!("could not unmount {}: {e}", self.mountpoint.display());
        }
    }
}

/// A frozen [`LoopDisk`]; thawed when dropped.
pub struct Frozen<'a> {
    disk: &'a LoopDisk,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if let Err(e) = run_tool(
            "fsfreeze",
            &[OsStr::new("--unfreeze"), self.disk.mountpoint.as_os_str()],
        ) {
            eprintln!("could not thaw {}: {e}", self.disk.mountpoint.display());
        }
    }
}
