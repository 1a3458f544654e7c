//! Start-up: opening the data dirs and putting them back in order after a
//! crash — temp files removed, interrupted moves finished
//! ([`super::previous::recover`]), data files without metadata removed,
//! blobs counted — before anything is served.

use super::durable::{put_in_place, How, TempFile};
use super::layout::{has_meta, ID_FILE, TMP_DIR};
use super::{previous, BlobStore, LOCK_STRIPES};
use anyhow::Context;
use parking_lot::Mutex;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use trove_common::xattr;

impl BlobStore {
    /// Opens (creating if needed) the data dirs: checks each is writable
    /// (and whether it takes extended attributes), empties its `tmp/`,
    /// removes data files left without metadata by a crash, and counts the
    /// blobs. Blocking.
    pub fn open(dirs: Vec<PathBuf>, fsync: bool) -> anyhow::Result<BlobStore> {
        anyhow::ensure!(!dirs.is_empty(), "give at least one data dir");
        let mut store = BlobStore {
            dirs,
            ids: vec![],
            fsync,
            xattrs: true,
            blobs: AtomicU64::new(0),
            blob_bytes: AtomicU64::new(0),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            writers: Mutex::default(),
            aborted: Mutex::default(),
        };
        let mut ids = Vec::with_capacity(store.dirs.len());
        let mut xattrs_everywhere = true;
        for dir in &store.dirs {
            let tmp = dir.join(TMP_DIR);
            fs::create_dir_all(&tmp).with_context(|| format!("cannot create data dir {}", dir.display()))?;
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
        store.ids = ids;
        store.xattrs = xattrs_everywhere;
        let (mut blobs, mut bytes) = (0, 0);
        store.walk(|data| {
            previous::recover(data);
            if has_meta(data) {
                blobs += 1;
                bytes += fs::metadata(data).map(|m| m.len()).unwrap_or(0);
            } else if data.exists() {
                tracing::warn!(path = %data.display(), "removing data file without metadata (left by a crash)");
                let _ = fs::remove_file(data);
            }
        })?;
        store.blobs.store(blobs, Ordering::Relaxed);
        store.blob_bytes.store(bytes, Ordering::Relaxed);
        Ok(store)
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
