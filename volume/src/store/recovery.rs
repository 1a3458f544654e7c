//! Start-up: opening the data dirs and putting them back in order after a
//! crash — temp files removed, interrupted moves finished
//! ([`super::previous::recover`]), data files without metadata moved aside,
//! blobs counted and the listing made ([`super::listing`]) — before
//! anything is served.

use super::durable::{put_in_place, How, TempFile};
use super::keyset::{CleanMark, Description, KeySet, LISTING_DIR};
use super::layout::{meta_presence, orphan, walk, ID_FILE, LOCK_FILE, TMP_DIR};
use super::{listing, previous, BlobStore, LOCK_STRIPES};
use anyhow::Context;
use parking_lot::Mutex;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use trove_common::xattr;

impl BlobStore {
    /// Opens (creating if needed) the data dirs: checks each is writable
    /// (and whether it takes extended attributes) and empties its `tmp/`.
    /// Unless the volume last stopped cleanly ([`BlobStore::close`]), it
    /// then walks every blob: finishes moves a crash interrupted, moves
    /// data files left without metadata aside (`orphans/`), counts the
    /// blobs and makes the key set. Blocking.
    pub fn open(dirs: Vec<PathBuf>, fsync: bool) -> anyhow::Result<BlobStore> {
        Self::open_with(dirs, fsync, false)
    }

    /// [`BlobStore::open`]; with `rescan`, the blobs are walked even after
    /// a clean shutdown (for files changed by hand while the volume was
    /// stopped).
    pub fn open_with(dirs: Vec<PathBuf>, fsync: bool, rescan: bool) -> anyhow::Result<BlobStore> {
        anyhow::ensure!(!dirs.is_empty(), "give at least one data dir");
        let mut ids = Vec::with_capacity(dirs.len());
        let mut locks = Vec::with_capacity(dirs.len());
        let mut xattrs_everywhere = true;
        for dir in &dirs {
            let tmp = dir.join(TMP_DIR);
            fs::create_dir_all(&tmp).with_context(|| format!("cannot create data dir {}", dir.display()))?;
            locks.push(lock_dir(dir)?);
            for entry in fs::read_dir(&tmp)? {
                let path = entry?.path();
                fs::remove_file(&path)
                    .with_context(|| format!("cannot remove stale temp file {}", path.display()))?;
            }
            let probe = tmp.join("write-probe");
            let file = File::create(&probe)
                .and_then(|mut f| f.write_all(b"ok").map(|()| f))
                .with_context(|| format!("data dir {} is not writable", dir.display()))?;
            let xattrs = xattr::supported(&file)
                .with_context(|| format!("cannot probe extended attributes in {}", dir.display()))?;
            if !xattrs {
                tracing::warn!(
                    dir = %dir.display(),
                    "this file system does not take user extended attributes (for ext4, mount with user_xattr): blobs' metadata goes to .meta sidecar files, one more file per write"
                );
                xattrs_everywhere = false;
            }
            fs::remove_file(&probe)?;
            let id = dir_id(dir, fsync)
                .with_context(|| format!("cannot read or create the id of data dir {}", dir.display()))?;
            ids.push(id);
        }
        // The key set last: the dirs are known to be usable by now.
        let listing = dirs[0].join(LISTING_DIR);
        let clean = if rescan {
            None
        } else {
            KeySet::reopen(&listing, &ids)?
        };
        let syncs = dirs
            .iter()
            .map(|d| super::group::DirSync::open(d))
            .collect::<Result<_, _>>()?;
        let make = |keys: KeySet, blobs: u64, bytes: u64, locks: Vec<File>| BlobStore {
            dirs: dirs.clone(),
            ids: ids.clone(),
            id_lost: dirs.iter().map(|_| Default::default()).collect(),
            fsync,
            shared_sync: false,
            stall: Duration::from_secs(30),
            syncs,
            xattrs: xattrs_everywhere,
            blobs: AtomicU64::new(blobs),
            blob_bytes: AtomicU64::new(bytes),
            keys: Arc::new(keys),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            durable_dirs: dirs.iter().map(|_| Default::default()).collect(),
            disk_calls: dirs.iter().map(|_| Default::default()).collect(),
            _locks: locks,
            writers: Mutex::default(),
            aborted: Mutex::default(),
            damage: Default::default(),
        };
        if let Some((keys, mark)) = clean {
            tracing::info!("the volume stopped cleanly: its key set is trusted, no walk");
            return Ok(make(keys, mark.blobs, mark.bytes, locks));
        }
        let (mut blobs, mut bytes) = (0, 0);
        let mut loader = KeySet::load(&listing)?;
        let mut failed = None;
        walk(&dirs, |data| {
            previous::recover(data);
            match meta_presence(data) {
                Ok(true) => {
                    blobs += 1;
                    bytes += fs::metadata(data).map(|m| m.len()).unwrap_or(0);
                }
                Ok(false) if data.exists() => orphan(data),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(path = %data.display(), error = %e, "cannot tell whether this blob has metadata: left in place, not counted")
                }
            }
            // The key, for the listing: from the blob or the value kept
            // aside. A copy whose metadata does not read names no key: it
            // stays out of the listing (and `/-/blobs`) until replaced.
            match previous::listed(data) {
                Ok(Some((m, path))) => {
                    let description = if path == data {
                        listing::description(&dirs, data, &m)
                    } else {
                        Description::from([])
                    };
                    if let Err(e) = loader.add(&m.key, description) {
                        failed.get_or_insert(e);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(path = %data.display(), error = %e, "unreadable metadata: blob left out of the listing")
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(anyhow::Error::new(e).context("cannot write the key set"));
        }
        let keys = loader.finish().context("cannot write the key set")?;
        Ok(make(keys, blobs, bytes, locks))
    }

    /// Stops the store for a clean shutdown: writes in flight finish, no
    /// new one can begin, and the key set is written whole with the
    /// counts, so that the next start-up need not walk the blobs. Blocking.
    pub fn close(&self) {
        // Every stripe: no write is between adding its key and renaming
        // its files in.
        let _stripes: Vec<_> = self.stripes.iter().map(|s| s.lock()).collect();
        let (blobs, bytes) = self.counts();
        let mark = CleanMark {
            dirs: self.ids.clone(),
            blobs,
            bytes,
        };
        match self.keys.close(&mark) {
            Ok(()) => tracing::info!(blobs, bytes, "key set written: the next start-up skips the walk"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the key set: the next start-up walks the blobs")
            }
        }
    }
}

/// Takes data dir `dir`'s lock ([`LOCK_FILE`]), held while the returned
/// file is open; an error when another volume holds it, or this one does
/// (the dir given twice, perhaps under two paths). The file is held open
/// read-only: a file open for writing would keep the disk from being
/// remounted read-only, which the volume is meant to ride out.
fn lock_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join(LOCK_FILE);
    // Made once; a disk mounted read-only keeps the one it has.
    let created = File::options().write(true).create_new(true).open(&path);
    let file = File::open(&path).map_err(|e| match created {
        Err(create) if create.kind() != std::io::ErrorKind::AlreadyExists => {
            anyhow::Error::new(create).context(format!("cannot create {}", path.display()))
        }
        _ => anyhow::Error::new(e).context(format!("cannot open {}", path.display())),
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => anyhow::bail!(
            "data dir {} is in use by another trove-volume (or given twice to this one): \
             each data dir belongs to one volume, or two \"replicas\" would be one copy",
            dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("cannot lock {}", path.display())))
        }
    }
}

/// The id of data dir `dir`, made (durably) if it has none yet.
fn dir_id(dir: &Path, fsync: bool) -> anyhow::Result<String> {
    let path = dir.join(ID_FILE);
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let id = format!("{:032x}", rand::random::<u128>());
    let temp = TempFile::with_bytes(&dir.join(TMP_DIR), ".id.tmp", format!("{id}\n").as_bytes(), fsync)?;
    put_in_place(vec![(temp, path, How::Rename)], fsync)?;
    Ok(id)
}
